#!/usr/bin/env bash
# The GPU check, as one call of a lent GPU machine. python3 there holds torch, torchvision, pandas,
# scikit-learn, seaborn and tqdm but not Jupyter's packages. Two modes:
#
# MODE=runs (default; from the device tool: command "bash benchmarks/gpu-check.sh", carry
# ["data/mnist"], timeout_s 600): names the GPU, runs the GPU tests of the fast paths
# (gpu-tests.txt), the benchmarks (results-cuda.json), then the experiments of the `full` profile in
# report order through `python -m hw1lib run`, each within what is left of BUDGET_SECONDS
# (times.tsv: experiment, seconds, exit code; summaries.tar.gz: every summary.json).
#
# MODE=report (first `bash benchmarks/gpu-pack.sh` here, then command
# "MODE=report bash benchmarks/gpu-check.sh", carry [".gpu"], timeout_s 600): installs the packed
# Jupyter wheels and MNIST, then runs `python -m hw1lib report --profile full --no-pdf` (no browser
# there) and returns the HTML report, whose front page lists each experiment's time, with
# times.tsv and summaries.tar.gz.
#
# Knobs: BUDGET_SECONDS (default 540); BENCHMARKS=0 to skip them; EXPERIMENTS="" for no runs, or
# e.g. "1.1-function 1.2-pca"; PYTHON, DEVICE and PROFILE (python3, cuda, full) to try the script
# elsewhere, e.g. on a CPU with
# PYTHON=.venv/bin/python DEVICE=cpu PROFILE=smoke BENCHMARKS=0 bash benchmarks/gpu-check.sh
#
# The device budget is 15 minutes a session, machine start included: MODE=report first (the full
# report is the figure the study needs), then, with what is left, EXPERIMENTS="" for the tests and
# the benchmarks.
set -uo pipefail
out=${OUT:-gpu-check-out}
mkdir -p "$out"
export PYTHONPATH=$PWD HW1_PROGRESS=0 PYTHONUNBUFFERED=1
export HW1_RESULTS_DIR=${HW1_RESULTS_DIR:-/tmp/hw1-results}
budget=${BUDGET_SECONDS:-540}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
profile=${PROFILE:-full}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

mode=${MODE:-runs}
if [ -d .gpu ]; then  # the kit from gpu-pack.sh
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl || exit 1
  # --target puts nbconvert's templates under /tmp/site/share/jupyter, where Jupyter does not look
  export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH JUPYTER_PATH=/tmp/site/share/jupyter
  [ -d data/mnist ] || { mkdir -p data && tar xzf .gpu/mnist.tar.gz -C data; } || exit 1
  "$py" -m ipykernel install --user --name hw1 --display-name "Python 3 (hw1)" >/dev/null || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import torch; print('torch', torch.__version__, 'cuda:', torch.cuda.is_available())" || exit 1
"$py" -m hw1lib data verify || exit 1

summaries() { (cd "$HW1_RESULTS_DIR" && tar czf - "$profile"/*/summary.json) > "$out/summaries.tar.gz"; }
if [ "$mode" = report ]; then
  t0=$(date +%s)
  timeout "$(left)" "$py" -m hw1lib report --profile "$profile" --device "$device" --no-pdf
  rc=$?
  printf 'experiment\tseconds\texit\nreport\t%s\t%s\n' $(( $(date +%s) - t0 )) "$rc" > "$out/times.tsv"
  cp report/hw1-report-"$profile".html "$out/" 2>/dev/null
  summaries
  cat "$out/times.tsv"
  exit "$rc"
fi
# The fast paths against eager training on this GPU (CUDA graphs, windowed read-back, TF32 switch).
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/test_ensemble.py tests/test_experiments.py \
  -k "cuda or window or tf32" 2>&1 | tee "$out/gpu-tests.txt"
echo "GPU tests exit code: ${PIPESTATUS[0]} (the runs go on either way)" | tee -a "$out/gpu-tests.txt"

if [ "${BENCHMARKS:-1}" = 1 ]; then
  # 2,000 function-fit epochs, not 20,000: the baseline's 600,000 eager steps alone would take the
  # whole call. The JSON records the sizes.
  timeout $(( $(left) / 3 )) "$py" benchmarks/run.py --device "$device" --repeats 5 \
    --function-epochs 2000 --output "$out/results-$device.json"
fi

order=$("$py" -c "from hw1lib.experiments import REGISTRY as r; print(' '.join(sorted(r, key=lambda i: tuple(map(int, r[i].section.split('.'))))))")
printf 'experiment\tseconds\texit\n' > "$out/times.tsv"
for e in ${EXPERIMENTS-$order}; do  # EXPERIMENTS="" runs none
  [ "$(left)" -gt 10 ] || { printf '%s\tnot run\t-\n' "$e" >> "$out/times.tsv"; continue; }
  t0=$(date +%s)
  timeout "$(left)" "$py" -m hw1lib run "$e" --profile "$profile" --device "$device"
  rc=$?
  printf '%s\t%s\t%s\n' "$e" $(( $(date +%s) - t0 )) "$rc" | tee -a "$out/times.tsv"
done
summaries
cat "$out/times.tsv"
