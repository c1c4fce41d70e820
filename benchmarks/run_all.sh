#!/usr/bin/env bash
# Rerun every benchmark of issue 8 at its default (CPU-friendly) size and keep the output.
#   benchmarks/run_all.sh [PYTHON]        # PYTHON defaults to .venv/bin/python; SCRIPTS="bench_x bench_y" runs a subset
# Output: benchmarks/results/<UTC date>.txt (tables as pasted into benchmarks/README.md).
# Bigger sizes: see each script's --help (e.g. bench_retrieval.py --sizes 10000 100000 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
mkdir -p benchmarks/results
out=${OUT:-"benchmarks/results/$(date -u +%Y-%m-%dT%H%M).txt"}
for script in ${SCRIPTS:-bench_model_load bench_generation bench_retrieval bench_finetune bench_scale bench_e2e}; do
  echo "== $script" | tee -a "$out"
  "$PY" "benchmarks/$script.py" 2>&1 | grep -av -e "^WARNING clustering" -e "de-quantizing GGUF" | tee -a "$out"
done
echo "wrote $out"
