#!/usr/bin/env bash
# The GPU check, as one call of a lent GPU machine. python3 there holds torch, torchvision, pandas,
# scikit-learn, seaborn and tqdm but not Jupyter's packages, so the experiments run through
# `python -m hw1lib run` (the report's notebooks only plot what those runs store). From the device
# tool: command "bash benchmarks/gpu-check.sh", carry ["data/mnist"], timeout_s 600.
#
# It names the GPU, runs the GPU tests (gpu-tests.txt), the benchmarks, then the experiments of the `full` profile in report order,
# each within what is left of BUDGET_SECONDS, and writes to $OUT (else ./gpu-check-out):
# results-cuda.json (the benchmarks), times.tsv (experiment, seconds, exit code) and
# summaries.tar.gz (every summary.json). Environment knobs: BUDGET_SECONDS (default 540),
# BENCHMARKS=0 to skip them, EXPERIMENTS="1.1-function 1.2-pca" to choose; PYTHON, DEVICE and
# PROFILE (python3, cuda, full) to try the script elsewhere, e.g. on a CPU with
# PYTHON=.venv/bin/python DEVICE=cpu PROFILE=smoke BENCHMARKS=0 bash benchmarks/gpu-check.sh
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

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import torch; print('torch', torch.__version__, 'cuda:', torch.cuda.is_available())" || exit 1
"$py" -m hw1lib data verify || exit 1
# The fast paths against eager training on this GPU (CUDA graphs, windowed read-back, TF32 switch).
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/test_ensemble.py tests/test_experiments.py \
  -k "cuda or window or tf32" 2>&1 | tee "$out/gpu-tests.txt"

if [ "${BENCHMARKS:-1}" = 1 ]; then
  # 2,000 function-fit epochs, not 20,000: the baseline's 600,000 eager steps alone would take the
  # whole call. The JSON records the sizes.
  timeout $(( $(left) / 3 )) "$py" benchmarks/run.py --device "$device" --repeats 5 \
    --function-epochs 2000 --output "$out/results-$device.json"
fi

order=$("$py" -c "from hw1lib.experiments import REGISTRY as r; print(' '.join(sorted(r, key=lambda i: tuple(map(int, r[i].section.split('.'))))))")
printf 'experiment\tseconds\texit\n' > "$out/times.tsv"
for e in ${EXPERIMENTS:-$order}; do
  [ "$(left)" -gt 10 ] || { printf '%s\tnot run\t-\n' "$e" >> "$out/times.tsv"; continue; }
  t0=$(date +%s)
  timeout "$(left)" "$py" -m hw1lib run "$e" --profile "$profile" --device "$device"
  rc=$?
  printf '%s\t%s\t%s\n' "$e" $(( $(date +%s) - t0 )) "$rc" | tee -a "$out/times.tsv"
done
(cd "$HW1_RESULTS_DIR" && tar czf - "$profile"/*/summary.json) > "$out/summaries.tar.gz"
cat "$out/times.tsv"
