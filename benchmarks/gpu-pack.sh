#!/usr/bin/env bash
# Packs, on this machine, what a lent GPU machine lacks for the report: the wheels of the Jupyter
# stack that papermill and nbconvert need, and ipywidgets for the notebooks' progress bars, built for
# its Python 3.12 (its image has torch, pandas, seaborn, scikit-learn and tqdm but no Jupyter
# packages, and it cannot download), and MNIST
# compressed (the raw IDX files alone are 53 MB of the device tool's 64 MiB per call). Writes .gpu/
# (git-ignored); then each device call carries [".gpu"] and runs `bash benchmarks/gpu-check.sh` (its
# header says how).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/wheels
pins=$(grep -E '^(papermill|nbconvert|nbformat|ipykernel|ipywidgets|latex2mathml)==' requirements.txt)
# PYVER: the target's Python (3.12 on the lent GPU machines; 3.11 to try the kit on this machine)
python3 -m pip download -q --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels $pins
# Already in the GPU image (its package list, 2026-11-17): keep its own versions.
for name in attrs certifi charset_normalizer click idna jinja2 markupsafe packaging psutil pygments \
            python_dateutil pyyaml requests six tqdm typing_extensions urllib3; do
  rm -f .gpu/wheels/"$name"-[0-9]*.whl
done
tar czf .gpu/mnist.tar.gz -C data mnist
du -sh .gpu/wheels .gpu/mnist.tar.gz
