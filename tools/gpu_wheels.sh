#!/usr/bin/env bash
# Prepare, on a machine with PyPI, the wheels that tools/gpu_check.sh needs on a GPU machine that cannot download:
# the notebook runner (nbval, nbclient, ipykernel, ipywidgets, ...) for CPython 3.12 on x86-64 Linux, into .whl/.
# torch and matplotlib are not fetched: the GPU machine's own builds are used.
#   bash tools/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.12}"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python -m pip download --quiet --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -d .whl nbval nbclient nbformat ipykernel jupyter_client ipywidgets cloudpickle pytest-timeout
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/ (carry it to the GPU machine)"
