#!/usr/bin/env bash
# Rerun every benchmark of issue 8 and keep the output (about 35 minutes on 2 quiet cores).
#   benchmarks/run_all.sh [PYTHON]        # PYTHON defaults to .venv/bin/python
#   SCRIPTS="bench_x bench_y" benchmarks/run_all.sh    # a subset, each at its default size
# Output: benchmarks/results/<UTC date and time>.txt (tables as pasted into benchmarks/README.md).
# Run it alone: timings on a machine busy with other jobs measure the neighbours.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
mkdir -p benchmarks/results
out=${OUT:-"benchmarks/results/$(date -u +%Y-%m-%dT%H%M).txt"}
ALL=(
  "bench_model_load"
  "bench_generation"
  "bench_serve"                        # batched server vs one request at a time, 1/4/16 clients
  "bench_retrieval"                    # encode, and FAISS at 10k and 100k
  "bench_retrieval --sizes 1000000 --skip-encode --hnsw-max 2000000 --ef-search 128 256 512 --ivf-lists 0"
  "bench_finetune"
  "bench_scale"
  "bench_e2e"
  "sequential_sim"                    # the stopping rule on simulated rows (no model, seconds)
)
if [[ -n "${SCRIPTS:-}" ]]; then read -ra ALL <<< "$SCRIPTS"; fi
for entry in "${ALL[@]}"; do
  read -ra args <<< "$entry"
  echo "== ${args[*]} ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out"
  "$PY" "benchmarks/${args[0]}.py" "${args[@]:1}" 2>&1 | grep -av -e "^WARNING clustering" -e "de-quantizing GGUF" | tee -a "$out"
done
echo "wrote $out"
