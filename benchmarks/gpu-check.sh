#!/usr/bin/env bash
# The GPU check, for a lent GPU machine (python3 there holds torch, torchvision, pandas, scikit-learn,
# seaborn and tqdm, but not Jupyter's packages, and it cannot download). First, here:
#     bash benchmarks/gpu-pack.sh        # writes .gpu/: the Jupyter wheels and MNIST compressed
# then one or more device calls, each: command "BUDGET_SECONDS=N bash benchmarks/gpu-check.sh",
# carry [".gpu"], timeout_s a little over N.
#
# It runs STEPS in order (default "tests report benchmarks"):
# - tests: the GPU tests of the fast paths (CUDA graphs, windowed read-back, TF32) -> gpu-tests.txt
# - report: `python -m hw1lib report --profile full --no-pdf` -> the HTML, whose front page lists
#   each experiment's training time
# - runs: each experiment of EXPERIMENTS (default: all, in report order) through `python -m hw1lib run`
# - benchmarks: benchmarks/run.py --resume, one case of CASES at a time -> results-cuda.json (rows
#   the committed benchmarks/results-cuda.json already has for this GPU are kept)
# each within what is left of BUDGET_SECONDS (default 540). A step or case that finished is marked
# done in STATE (default /tmp/hw1-gpu-state), which, like the results under HW1_RESULTS_DIR, lives
# on while the machine stays warm: a second call resumes where the first stopped, and a report cut
# off part way reuses the runs it had stored. times.tsv logs every attempt (step, seconds, exit
# code, when); everything measured so far is copied to $OUT after each step.
#
# To try it elsewhere, e.g. on a CPU:
# PYTHON=.venv/bin/python DEVICE=cpu PROFILE=smoke CASES=ensemble bash benchmarks/gpu-check.sh
set -uo pipefail
out=${OUT:-gpu-check-out}
state=${STATE:-/tmp/hw1-gpu-state}
mkdir -p "$out" "$state"
export PYTHONPATH=$PWD HW1_PROGRESS=0 PYTHONUNBUFFERED=1
export HW1_RESULTS_DIR=${HW1_RESULTS_DIR:-/tmp/hw1-results}
budget=${BUDGET_SECONDS:-540}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
profile=${PROFILE:-full}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

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

[ -e "$state/times.tsv" ] || printf 'step\tseconds\texit\tended\n' > "$state/times.tsv"
attempt() {  # attempt NAME COMMAND...: runs it within what is left, logs the time, marks it done
  # when it succeeded; returns its exit code (124: cut off), or 75 when no time was left for it
  local name=$1 t0 rc
  shift
  [ -e "$state/$name.done" ] && { echo "== $name: done in an earlier call"; return 0; }
  [ "$(left)" -gt 15 ] || { echo "== $name: no time left"; return 75; }
  echo "== $name ($(left) s left)"
  t0=$(date +%s)
  timeout -k 10 "$(left)" "$@"
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" $(( $(date +%s) - t0 )) "$rc" "$(date -u +%FT%TZ)" >> "$state/times.tsv"
  [ "$rc" = 0 ] && touch "$state/$name.done"
  return "$rc"
}
collect() {
  cp "$state"/times.tsv "$state"/gpu-tests.txt "$state"/results-*.json report/hw1-report-"$profile".html \
    "$out"/ 2>/dev/null
  (cd "$HW1_RESULTS_DIR" 2>/dev/null && tar czf - "$profile"/*/summary.json) > "$out/summaries.tar.gz" 2>/dev/null
}

order=$("$py" -c "from hw1lib.experiments import REGISTRY as r; print(' '.join(sorted(r, key=lambda i: tuple(map(int, r[i].section.split('.'))))))")
for step in ${STEPS:-tests report benchmarks}; do
  case $step in
    tests)  # failing tests (pytest's exit code 1) are recorded, not rerun; the other steps go on
      attempt tests bash -o pipefail -c "$(printf '%q ' "$py") -m pytest -q -p no:cacheprovider \
        tests/test_ensemble.py tests/test_experiments.py -k 'cuda or window or tf32' 2>&1 \
        | tee $(printf '%q' "$state/gpu-tests.txt")"
      [ $? = 1 ] && touch "$state/tests.done" ;;
    report)
      # kernels live in sessions of their own: one cut off with the report would hold the GPU, so
      # the report and its kernels carry a marker, and whatever carries it after the report (or
      # before it: left by a call that was killed outright) is stopped. Only this check's kernels:
      # not a JupyterLab's.
      stop_marked() {
        local left_over
        left_over=$(grep -las "HW1_GPU_CHECK_RUN=" /proc/[0-9]*/environ | cut -d/ -f3)
        [ -z "$left_over" ] || { kill $left_over 2>/dev/null; sleep 3; }
      }
      stop_marked
      attempt report env "HW1_GPU_CHECK_RUN=$$" "$py" -m hw1lib report --profile "$profile" \
        --device "$device" --no-pdf
      stop_marked ;;
    runs)
      for e in ${EXPERIMENTS-$order}; do
        attempt "run-$e" "$py" -m hw1lib run "$e" --profile "$profile" --device "$device"
      done ;;
    benchmarks)
      # Sized so that the four cases fit one device call of about 6 minutes on an H200. Measured
      # there (2026-12-04, torch 2.11): the ensemble case at 100 epochs took 113 s (baseline 19.8 s a
      # loop of 100 train() runs, 6 loops); at the CPU's 200 epochs it did not finish in 225 s. The
      # analysis case at its CPU sizes (100 nets, 10,000 images) did not finish in 43 + 246 s: the
      # baseline's per-image Jacobian loop alone is minutes there, so the GPU check measures 20 nets
      # and 1,000 images (the row records its sizes; the ratio is per net and per image). 500
      # function-fit epochs, not 20,000: the baseline's eager steps with a read-back take about a
      # millisecond each, and 6 × 30 runs × 20,000 of them would be an hour. Expected on an H200:
      # ensemble ~2 min, mnist-epoch ~1.5 min, analysis ~1 min, function-fit ~1.5 min. Each row is
      # written as soon as it is measured, so a cut-off keeps the rows before it.
      # --resume: rows already in the committed results file for this very GPU, or measured by an
      # earlier call on this machine before a cut-off, are kept, not measured again
      [ -e "$state/results-$device.json" ] || cp "benchmarks/results-$device.json" "$state/" 2>/dev/null
      for c in ${CASES:-ensemble mnist-epoch analysis function-fit}; do
        attempt "benchmark-$c" "$py" benchmarks/run.py --device "$device" --repeats 5 --only "$c" \
          --ensemble-epochs 100 --function-epochs 500 --hessian-nets 20 --sensitivity-images 1000 \
          --resume --output "$state/results-${device}.json"
      done ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
  collect
done
cat "$state/times.tsv"
