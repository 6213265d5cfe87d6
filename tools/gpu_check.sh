#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, run the GPU tests and execute every solution notebook the way a
# Colab user would (setup cell, GPU detected, spawned ranks), comparing printed outputs with the committed ones.
# Writes a short report (and the logs) to $OUT (default out/gpu).
#   bash tools/gpu_check.sh                # on a GPU machine with PyPI: installs requirements.txt (torch kept)
#   bash tools/gpu_check.sh                # on one without: carry .whl/ made by tools/gpu_wheels.sh first
#   NOTEBOOKS=solutions/00_ranks_and_messages.ipynb bash tools/gpu_check.sh   # a subset
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"; mkdir -p "$OUT"
report="$OUT/gpu_report.md"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
started=$(date +%s)

if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed" | tee "$report"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site" PATH="/tmp/site/bin:$PATH"
else
    "$PY" -m pip install -q -r requirements.txt || { echo "pip install -r requirements.txt failed" | tee "$report"; exit 1; }
fi
"$PY" -m ipykernel install --user --name python3 >/dev/null 2>&1 || true

{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo '```'
    nvidia-smi -L 2>&1 | head -4
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda available', torch.cuda.is_available(), '| GPUs', torch.cuda.device_count())"
    "$PY" -c "import labs.course.environment as e; print(e.explain())"
    echo '```'
} > "$report" 2>&1

echo "## GPU tests (pytest -m gpu tests/test_gpu.py)" >> "$report"
t0=$(date +%s)
"$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q -rfEs --timeout 600 > "$OUT/gpu_tests.log" 2>&1
status=$?
echo "exit $status, $(( $(date +%s) - t0 )) s: $(tail -n 1 "$OUT/gpu_tests.log")" >> "$report"
[ $status -eq 0 ] || grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20 >> "$report"

echo >> "$report"; echo "## Zero bubble on NCCL (zb-h1, zb-v; one GPU per rank, messages in order)" >> "$report"
"$PY" - >> "$report" 2>&1 <<'PYEOF'
import torch
import labs
gpus = torch.cuda.device_count()
if gpus < 2:
    print(f"- skipped: NCCL needs one GPU per rank, this machine has {gpus} (the in-order runs on gloo+CUDA are in "
          f"the GPU tests above)")
else:
    P = min(gpus, 4)
    for name, v in (("zb-h1", 1), ("zb-v", 2)):
        run = labs.run_pipeline(name, P=P, M=2 * P, v=v, layers=4 * P, pace_ms=None, device="cuda", timeout_s=180)
        print(f"- {name}: P={P} M={2 * P} on NCCL, max |pipeline - one process| = {run.max_grad_error:.1e}, "
              f"peak memory per rank {run.trace.peak_memory_bytes} bytes")
PYEOF
echo >> "$report"; echo "## Notebooks on the GPU (nbval against the committed outputs)" >> "$report"
echo "| notebook | result | seconds |" >> "$report"; echo "|---|---|---|" >> "$report"
for nb in ${NOTEBOOKS:-solutions/[0-9][0-9]_*.ipynb}; do
    name=$(basename "$nb" .ipynb)
    t0=$(date +%s)
    "$PY" -m pytest "$nb" -p no:cacheprovider -q > "$OUT/nb_$name.log" 2>&1
    status=$?
    result=$([ $status -eq 0 ] && echo passed || echo "FAILED: $(grep -m1 -E 'Cell [0-9]+|Error' "$OUT/nb_$name.log" | cut -c1-120)")
    echo "| $name | $result | $(( $(date +%s) - t0 )) |" >> "$report"
done

echo >> "$report"; echo "## Left behind" >> "$report"
leftover=$(pgrep -f "labs-rank|multiprocessing.spawn" | tr '\n' ' ')
echo "- worker processes still running: ${leftover:-none}" >> "$report"
echo "- processes holding GPU memory: $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1 | tr '\n' ';' | sed 's/;$//' )" >> "$report"
echo >> "$report"; echo "total $(( $(date +%s) - started )) s" >> "$report"
cat "$report"
