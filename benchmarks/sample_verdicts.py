"""Run every sample task under several seeds; print expected vs actual verdict and headline numbers.

    .venv/bin/python benchmarks/sample_verdicts.py [--seeds 0 1 2] [--tasks support json_orders ...]

Expected verdicts follow the field's guidance (data/README.md); the advisor's
verdict comes from its measurements. A mismatch is printed, never hidden.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from advisor import run as runner
from advisor.results import load_results
from advisor.task import load_task

EXPECTED = {
    "support": {"rag", "lora+rag", "few-shot+rag"},
    "json_orders": {"lora", "lora+rag"},
    "quick_facts": {"zero-shot", "few-shot", "few-shot-dynamic"},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=list(EXPECTED))
    ap.add_argument("--out", default="runs/verdicts")
    ap.add_argument("--summarize", action="store_true",
                    help="run nothing: print the per-tag Markdown table from the runs already in --out")
    args = ap.parse_args()
    if args.summarize:
        print(per_tag_markdown(Path(args.out), args.tasks, args.seeds))
        return
    console = Console()
    table = Table(title="sample tasks: expected vs measured verdict")
    for col in ("task", "seed", "expected", "verdict", "match", "accuracy per row", "verdict $/1k req", "run s"):
        table.add_column(col)
    for name in args.tasks:
        for seed in args.seeds:
            task = load_task(Path("data") / name)
            r = runner.run(task, Path(args.out) / f"{name}-seed{seed}", seed=seed, console=Console(stderr=True, quiet=True),
                            command=f"advisor run data/{name} --seed {seed}")
            rec = r.recommendation.strategy
            # "not enough evidence (leading: X)" is no verdict, so it never matches an expectation
            said = rec if r.recommendation.recommended else f"{r.recommendation.status} (leading: {rec})"
            accuracies = ", ".join(f"{s.name} {s.accuracy.mean:.0%}" for s in r.strategies)
            table.add_row(name, str(seed), " / ".join(sorted(EXPECTED[name])), said,
                          "yes" if r.recommendation.recommended in EXPECTED[name] else "NO",
                          accuracies,
                          f"${1000 * r.strategy(rec).economics.cost_per_request:.4f}", f"{r.run.seconds:.0f}")
            console.print(f"{name} seed {seed}: {said} ({accuracies})")
    console.print(table)
    print(per_tag_markdown(Path(args.out), args.tasks, args.seeds))


def _ci(e) -> str:
    return f"{e.mean:.0%} ({e.low:.0%}-{e.high:.0%})"


def per_tag_markdown(out: Path, tasks: list[str], seeds: list[int]) -> str:
    """Verdict, and each row's accuracy per tag with the method that scored the tag and its 95% CI (Markdown)."""
    lines = ["| task | seed | verdict | row | accuracy | per tag (method): accuracy (95% CI) |", "|---|---|---|---|---|---|"]
    for name in tasks:
        for seed in seeds:
            path = out / f"{name}-seed{seed}" / "results.json"
            if not path.exists():
                continue
            r = load_results(path)
            methods = {t: ex.method for ex in r.examples for t in ex.tags}
            rec = r.recommendation
            said = rec.strategy if rec.recommended else f"{rec.status} (leading: {rec.strategy})"
            for k, s in enumerate(r.strategies):
                tags = "; ".join(f"{t} ({methods.get(t, '?')}): {_ci(e)}" for t, e in s.by_tag.items())
                lines.append(f"| {name if k == 0 else ''} | {seed if k == 0 else ''} | {said if k == 0 else ''} "
                             f"| {s.name} | {_ci(s.accuracy)} | {tags} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
