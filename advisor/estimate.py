"""`advisor run --dry-run`: what a run would take, from the task and the last measured run.

No model is loaded. The estimate rests on the newest run of the same task in the
history: its measured seconds per eval item (batched generation), tokens and cost
per request, and set-up time (training, indexing). They are scaled by the number of
requests this run would send: the eval items, their paraphrases, the consistency
samples and the single-request latency probes. A row never measured says so instead
of guessing; a smoke run (`--limit 8`) measures it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from advisor import history
from advisor.cache import hash_json
from advisor.task import Task
from advisor.workload import requests_per_row


@dataclass(frozen=True)
class RowEstimate:
    strategy: str
    requests: int
    measured: bool
    tokens: float | None = None
    seconds: float | None = None  # generation + latency probes + last measured set-up
    setup_seconds: float | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Estimate:
    task: str
    basis: str  # which run the numbers come from, in words
    rows: tuple[RowEstimate, ...]


def estimate(task: Task, rows: list[str], history_file: Path) -> Estimate:
    runs = history.list_runs(history_file, task.name)
    n = requests_per_row(task)
    if not runs:
        return Estimate(task.name, f"no run of task {task.name!r} in {history_file} yet: nothing measured to scale "
                        "(a smoke run, advisor run --limit 8, measures it)",
                        tuple(RowEstimate(r, n, False) for r in rows))
    last = runs[-1]
    same = "the same task files" if last.task_hash == hash_json(task.files) else "task files that have changed since"
    basis = (f"run {last.id} of {last.created} ({last.n_eval} eval items, {same}); set-up is its measured "
             "training/indexing time, 0 when the cache still holds the adapter and index")
    out = []
    for name in rows:
        r = last.row(name)
        if r is None or not r.generation_seconds or not last.n_eval:
            out.append(RowEstimate(name, n, False))
            continue
        per_request = r.generation_seconds / last.n_eval
        latency = (r.latency_p50_s or per_request) * min(task.spec.latency.requests, len(task.eval))
        generation = per_request * (n - min(task.spec.latency.requests, len(task.eval)))
        out.append(RowEstimate(
            name, n, True, tokens=n * ((r.prompt_tokens or 0) + (r.completion_tokens or 0)),
            seconds=generation + latency + (r.setup_seconds or 0), setup_seconds=r.setup_seconds,
            cost_usd=n * r.cost_per_request if r.cost_per_request is not None else None))
    return Estimate(task.name, basis, tuple(out))


def terminal(e: Estimate, console: Console) -> None:
    t = Table(title=f"advisor run --dry-run: {e.task} (nothing was run)", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("Strategy", "requests", "tokens", "time", "of which set-up", "cost $"):
        t.add_column(col, justify="left" if col == "Strategy" else "right")
    for r in e.rows:
        if not r.measured:
            t.add_row(Text(r.strategy), str(r.requests), "not measured", "–", "–", "–")
            continue
        t.add_row(Text(r.strategy), str(r.requests), f"{r.tokens:,.0f}", f"{r.seconds:,.1f} s",
                  f"{r.setup_seconds or 0:,.1f} s", "–" if r.cost_usd is None else f"{r.cost_usd:.6f}")
    console.print(t)
    measured = [r for r in e.rows if r.measured]
    if measured:
        console.print(Text(f"total: {sum(r.seconds for r in measured):,.1f} s, "
                           f"{sum(r.tokens for r in measured):,.0f} tokens, "
                           f"${sum(r.cost_usd or 0 for r in measured):.6f} (measured rows only)"))
    console.print(Text(f"basis: {e.basis}. Model loading and the experiments (freshness, forgetting, data curve) "
                       "are not included.", style="dim"))


def summary_line(e: Estimate) -> str:
    """One line for the start of a run: the estimated time, or why there is none yet."""
    measured = [r for r in e.rows if r.measured]
    if not measured:
        return ("estimated time: none yet (no earlier run of this task to scale); "
                "each stage's bar shows its own remaining time")
    total = sum(r.seconds for r in measured)
    missing = [r.strategy for r in e.rows if not r.measured]
    return (f"estimated time: about {total / 60:,.1f} min for the rows"
            + (f" ({', '.join(missing)} not measured yet)" if missing else "")
            + f", plus model loading and experiments; {e.basis}")
