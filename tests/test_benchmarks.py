"""The benchmark scripts still run against today's code (tiny sizes; no timing is asserted).

They import the advisor's internals, so a rename breaks them silently; this runs each
one the way run_all.sh does and checks that it printed its comparison.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "bench_retrieval": (["--sizes", "2000", "--queries", "20", "--single-queries", "5", "--ivf-lists", "40",
                         "--encode-limit", "128"],
                        ["advisor: one call, length-sorted", "exact: IndexFlatIP", "(advisor's)", "IVFFlat nlist=40",
                         "single vs exact"]),
    "bench_generation": (["--n", "2", "--max-new-tokens", "4"], ["naive: one generate() per prompt", "speed-up",
                                                                  "static vs growing KV cache"]),
    "bench_finetune": (["--limit", "4"], ["naive: HF Trainer + peft", "advisor: train_lora", "speed-up"]),
    "bench_serve": (["--concurrency", "1", "2", "--requests-per-client", "1", "--max-tokens", "2"],
                    ["advisor serve, ", "ratio"]),
    "bench_scale": (["--docs", "1", "2", "--evals", "1", "2"], ["indexing", "answering, rag", "t doubles at n ="]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_and_prints_its_comparison(script, tmp_path):
    args, expected = CASES[script]
    env = os.environ | {"PYTHONPATH": str(ROOT), "ADVISOR_CACHE": os.environ["ADVISOR_CACHE"], "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{script} did not print {text!r}:\n{proc.stdout[-3000:]}"
