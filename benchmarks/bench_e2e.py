"""End to end: `advisor run` on the sample task with an empty cache, then again with every cache warm.

    python benchmarks/bench_e2e.py [--task data/support]

Each run is a fresh process under `/usr/bin/time -v` (wall time and peak RSS).
The cold run is the baseline; the warm run (same cache, new output folder) is
what a user iterating on the task pays. Load average is recorded before and after
each run because the CPU is shared. Goals (issue 19): cold < 300 s and < 3 GiB on
2 cores, warm < 45 s. The previous figures (before bf16 and budgets: float32, a separate
lora+rag adapter, the quiet-machine run of 2026-11-24 in benchmarks/README.md) are
printed beside them, with every row's accuracy before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, machine, print_table, speed


# advisor run data/support, 2026-11-24 03:50 UTC, quiet machine: float32, lora+rag's own adapter (the baseline).
PREVIOUS = {"cold_s": 918.0, "rss_gib": 2.77, "warm_s": 54.0,
            "accuracy": {"few-shot": 0.10, "rag": 0.25, "lora": 0.40, "lora+rag": 0.625}}


def timed_run(args: list[str], env: dict) -> dict:
    """Run under /usr/bin/time -v; return wall seconds, peak RSS (GiB) and load before/after."""
    before = os.getloadavg()[0]
    p = subprocess.run(["/usr/bin/time", "-v", *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"run failed:\n{p.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    warnings = sum("Warning" in line for line in (p.stdout + p.stderr).splitlines())  # issue 19: a run prints none
    return {"seconds": seconds, "rss_gib": rss_kib / 2**20, "load": f"{before:.1f} -> {os.getloadavg()[0]:.1f}",
            "warnings": warnings}


def stages(out: Path) -> str:
    """Where the time went, from results.json: training, indexing, generation per row."""
    r = json.loads((out / "results.json").read_text())
    parts = [f"{s['name']}: gen {s['throughput']['generation_seconds']:.0f}s"
             + (f", train {s['setup']['train_seconds']:.0f}s" if s["setup"]["train_seconds"] else "")
             for s in r["strategies"]]
    return "; ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/support")
    ap.add_argument("--budget", default="fast", choices=["fast", "full"])
    args = ap.parse_args()
    print(machine())
    print(speed(), "(before the cold run)")
    env = dict(os.environ, ADVISOR_CACHE=tempfile.mkdtemp(prefix="bench-e2e-cache-"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    outs = [Path(tempfile.mkdtemp(prefix=f"bench-e2e-{k}-")) for k in ("cold", "warm")]
    cmd = [sys.executable, "-m", "advisor.cli", "run", args.task, "--no-history", "--budget", args.budget, "--out"]
    cold = timed_run(cmd + [str(outs[0])], env)
    print(speed(), "(after the cold run)")
    warm = timed_run(cmd + [str(outs[1])], env)
    print(speed(), "(after the warm run)")
    shutil.rmtree(env["ADVISOR_CACHE"])  # ~0.5 GB; the two run folders stay, for their logs and reports
    print(f"run folders (advisor.log has each stage's time): {outs[0]} (cold), {outs[1]} (warm)")
    print_table(
        f"End to end: advisor run {args.task} --budget {args.budget}",
        ["cache", "wall s", "peak RSS GiB", "vs cold", "previous s", "vs previous", "load avg (1 min) before -> after",
         "lines with Warning"],
        [["empty (fresh ADVISOR_CACHE)", cold["seconds"], cold["rss_gib"], "1.00", PREVIOUS["cold_s"],
          f"{cold['seconds'] / PREVIOUS['cold_s']:.2f}", cold["load"], cold["warnings"]],
         ["warm (same cache, second run)", warm["seconds"], warm["rss_gib"], f"{warm['seconds'] / cold['seconds']:.2f}",
          PREVIOUS["warm_s"], f"{warm['seconds'] / PREVIOUS['warm_s']:.2f}", warm["load"], warm["warnings"]]],
        note=f"cold stages (measured inside the run): {stages(outs[0])}\n"
             f"goals: cold < 300 s {'met' if cold['seconds'] < 300 else 'MISSED'}; "
             f"< 3 GiB {'met' if cold['rss_gib'] < 3 else 'MISSED'}; "
             f"warm < 45 s {'met' if warm['seconds'] < 45 else 'MISSED'}",
    )
    accuracy = {s["name"]: s["accuracy"]["mean"] for s in json.loads((outs[0] / "results.json").read_text())["strategies"]}
    print_table("Accuracy per row: previous (float32, separate lora+rag adapter) and now",
                ["row", "previous", "now"],
                [[name, PREVIOUS["accuracy"].get(name, "-"), acc] for name, acc in accuracy.items()])


if __name__ == "__main__":
    main()
