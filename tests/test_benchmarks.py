"""The benchmark scripts still run against today's code (tiny sizes; no timing is asserted).

They import the advisor's internals, so a rename breaks them silently; this runs each
one the way run_all.sh does and checks that it printed its comparison. Those that read
a task read the tests' tiny one: prompts of ~100 tokens, not the sample's ~1,000.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_task

ROOT = Path(__file__).resolve().parents[1]
TAKES_A_TASK = {"bench_generation", "bench_finetune", "bench_serve", "bench_scale"}
CASES = {
    "bench_retrieval": (["--sizes", "2000", "--queries", "20", "--single-queries", "5", "--ivf-lists", "40",
                         "--encode-limit", "32"],
                        ["advisor: one call, length-sorted", "exact: IndexFlatIP", "(advisor's)", "IVFFlat nlist=40",
                         "single vs exact"]),
    "bench_generation": (["--n", "2", "--max-new-tokens", "4"], ["naive: one generate() per prompt", "speed-up",
                                                                  "static vs growing KV cache"]),
    "bench_finetune": (["--limit", "4"], ["naive: HF Trainer + peft", "advisor: train_lora", "speed-up"]),
    "bench_serve": (["--concurrency", "1", "2", "--requests-per-client", "1", "--max-tokens", "2"],
                    ["advisor serve, ", "ratio"]),
    "bench_scale": (["--docs", "1", "2", "--evals", "1", "2"], ["indexing", "answering, rag", "t doubles at n ="]),
}


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory) -> Path:
    return write_task(tmp_path_factory.mktemp("bench") / "task")


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_and_prints_its_comparison(script, tiny_task):
    args, expected = CASES[script]
    args = args + (["--task", str(tiny_task)] if script in TAKES_A_TASK else [])
    env = os.environ | {"PYTHONPATH": str(ROOT), "ADVISOR_CACHE": os.environ["ADVISOR_CACHE"]}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{script} did not print {text!r}:\n{proc.stdout[-3000:]}"
