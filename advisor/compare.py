"""`advisor compare A B`: what changed between two runs, and did it help.

A and B are history run ids or output folders. The answer has four parts: the inputs
that changed (task.yaml fields, task files, models, seed), per-row accuracy deltas
with a paired test on the eval items both runs answered (the same McNemar / Wilcoxon
as within a run, `advisor.scoring.paired_compare`), cost deltas, and whether the
verdict changed and what each run gave as its reasons.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from advisor import history
from advisor.cache import hash_file
from advisor.formatting import money, pct
from advisor.results import Results, ResultsError, load_results
from advisor.stats import paired_compare
from advisor.task import TASK_FILE

DASH = "–"


class CompareError(Exception):
    """A run reference that names neither a history id nor a run folder (bad input)."""


@dataclass(frozen=True)
class Change:
    what: str  # "field instructions", "file eval.jsonl", "model generator", "seed"
    a: str
    b: str


@dataclass(frozen=True)
class RowDelta:
    strategy: str
    accuracy_a: float | None
    accuracy_b: float | None
    shared: int  # eval items both runs answered with this row
    diff: float | None  # B - A on the shared items
    low: float | None
    high: float | None
    p_value: float | None
    test: str
    significant: bool
    cost_a: float | None
    cost_b: float | None


@dataclass(frozen=True)
class Comparison:
    a: history.RunRecord
    b: history.RunRecord
    label_a: str
    label_b: str
    changes: tuple[Change, ...]
    yaml_diff: str  # unified diff of the task.yaml snapshots ('' when equal or unknown)
    rows: tuple[RowDelta, ...]

    @property
    def verdict_changed(self) -> bool:
        return self.a.verdict != self.b.verdict


# ---------------------------------------------------------------- loading runs


def load(ref: str, history_file: Path) -> tuple[history.RunRecord, str]:
    """A run id from the history, or a run folder (its history record when the folder's results match it)."""
    path = Path(ref)
    if path.exists():
        folder = path.parent if path.is_file() else path
        results = _read_results(folder)
        started = results.run.started
        recorded = history.latest_for_out_dir(history_file, folder)
        if recorded is not None and recorded.created == started:
            return recorded, f"{folder} (run {recorded.id})"
        return history.record_from_results(results, _task_yaml_if_unchanged(results), folder.resolve()), str(folder)
    if ref.isdigit():
        return history.get_run(history_file, int(ref)), f"run {ref}"
    raise CompareError(f"{ref!r} is neither a run folder nor a run id in {history_file} (see `advisor history`)")


def _read_results(folder: Path) -> Results:
    try:
        return load_results(folder)
    except ResultsError as e:
        raise CompareError(str(e)) from None


def _task_yaml_if_unchanged(results: Results) -> str:
    """A folder without a history record: the task.yaml it ran on, if the file is still as it was."""
    root, files = results.task.root, results.task.files
    path = Path(root) / TASK_FILE
    if root and path.is_file() and files.get(TASK_FILE) == hash_file(path):
        return path.read_text(encoding="utf-8")
    return ""


# ---------------------------------------------------------------- comparing


def _flatten(x: Any, prefix: str = "") -> dict[str, str]:
    """Nested task.yaml fields as dotted names -> their YAML-ish text, for a field-by-field diff."""
    if isinstance(x, dict):
        out: dict[str, str] = {}
        for k, v in x.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: x if isinstance(x, str) else json.dumps(x, default=str)}


def _fields(task_yaml: str) -> dict[str, str] | None:
    if not task_yaml:
        return None
    try:
        raw = yaml.safe_load(task_yaml)
    except yaml.YAMLError:
        return None
    return _flatten(raw) if isinstance(raw, dict) else None


def changes(a: history.RunRecord, b: history.RunRecord) -> list[Change]:
    out = []
    fa, fb = _fields(a.task_yaml), _fields(b.task_yaml)
    if fa is not None and fb is not None:
        for k in sorted(fa.keys() | fb.keys()):
            if fa.get(k) != fb.get(k):
                out.append(Change(f"field {k}", fa.get(k, DASH), fb.get(k, DASH)))
    for name in sorted(a.task_files.keys() | b.task_files.keys()):
        ha, hb = a.task_files.get(name), b.task_files.get(name)
        if ha != hb and not (name == TASK_FILE and fa is not None and fb is not None):  # its fields are listed
            out.append(Change(f"file {name}", "absent" if ha is None else ha[:12], "absent" if hb is None else hb[:12]))
    for role in sorted(a.models.keys() | b.models.keys()):
        if a.models.get(role) != b.models.get(role):
            out.append(Change(f"model {role}", a.models.get(role, DASH), b.models.get(role, DASH)))
    for what, va, vb in (("task name", a.task_name, b.task_name), ("seed", a.seed, b.seed),
                         ("eval items", a.n_eval, b.n_eval), ("advisor version", a.advisor_version, b.advisor_version)):
        if va != vb:
            out.append(Change(what, str(va), str(vb)))
    return out


def row_deltas(a: history.RunRecord, b: history.RunRecord, seed: int = 0) -> list[RowDelta]:
    names = [r.strategy for r in a.rows] + [r.strategy for r in b.rows if a.row(r.strategy) is None]
    out = []
    for name in names:
        ra, rb = a.row(name), b.row(name)
        sa, sb = a.scores.get(name, {}), b.scores.get(name, {})
        shared = [i for i in sa if i in sb]
        c = paired_compare(f"B {name}", [sb[i] for i in shared], f"A {name}", [sa[i] for i in shared], seed) \
            if shared else None
        out.append(RowDelta(
            strategy=name, accuracy_a=ra.accuracy if ra else None, accuracy_b=rb.accuracy if rb else None,
            shared=len(shared), diff=c.diff if c else None, low=c.low if c else None, high=c.high if c else None,
            p_value=c.p_value if c else None, test=c.test if c else "no shared eval items",
            significant=c.significant if c else False,
            cost_a=ra.cost_per_request if ra else None, cost_b=rb.cost_per_request if rb else None))
    return out


def compare(a: history.RunRecord, b: history.RunRecord, label_a: str = "A", label_b: str = "B") -> Comparison:
    diff = ""
    if a.task_yaml and b.task_yaml and a.task_yaml != b.task_yaml:
        diff = "".join(difflib.unified_diff(a.task_yaml.splitlines(keepends=True), b.task_yaml.splitlines(keepends=True),
                                            f"{label_a}/task.yaml", f"{label_b}/task.yaml"))
    seed = b.seed if b.seed is not None else 0
    return Comparison(a, b, label_a, label_b, tuple(changes(a, b)), diff, tuple(row_deltas(a, b, seed)))


# ---------------------------------------------------------------- rendering


def _pct(x: float | None) -> str:
    return DASH if x is None else pct(x)


def _pp(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:+.0f} pp"


def _usd(x: float | None) -> str:
    return DASH if x is None else money(x)


def _usd_delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return DASH
    sign = "+" if b >= a else "-"
    return sign + money(abs(b - a)) + (f" ({(b - a) / a:+.0%})" if a else "")


def _short(s: str, n: int = 60) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def table_rows(c: Comparison) -> list[dict[str, str]]:
    """The per-row table, as text: terminal and HTML show the same cells."""
    return [{"Strategy": r.strategy, "Acc A": _pct(r.accuracy_a), "Acc B": _pct(r.accuracy_b),
             "Δ paired (95% CI)": DASH if r.diff is None else f"{_pp(r.diff)} ({100 * r.low:+.0f}…{100 * r.high:+.0f})",
             "items": str(r.shared), "p": DASH if r.p_value is None else f"{r.p_value:.3g}",
             "test": r.test, "significant": "yes" if r.significant else "no",
             "$/req A": _usd(r.cost_a), "$/req B": _usd(r.cost_b), "Δ $/req": _usd_delta(r.cost_a, r.cost_b)}
            for r in c.rows]


def verdict_line(c: Comparison) -> str:
    if not c.verdict_changed:
        return f"verdict unchanged: {c.a.verdict}"
    return f"verdict changed: {c.a.verdict} -> {c.b.verdict}"


def terminal(c: Comparison, console: Console) -> None:
    console.print(Text(f"A: {c.label_a}, {c.a.task_name}, {c.a.created}", style="bold"))
    console.print(Text(f"B: {c.label_b}, {c.b.task_name}, {c.b.created}", style="bold"))
    t = Table(title="What changed", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("What", "A", "B"):
        t.add_column(col, overflow="fold")
    for ch in c.changes:
        t.add_row(Text(ch.what), Text(_short(ch.a)), Text(_short(ch.b)))
    if c.changes:
        console.print(t)
    else:
        console.print(Text("What changed: nothing in the task, models or seed", style="dim"))
    rows = table_rows(c)
    t = Table(title="Rows (Δ = B − A on the eval items both runs answered)", box=box.SIMPLE_HEAD, title_justify="left")
    for col in rows[0] if rows else []:
        t.add_column(col, justify="left" if col in ("Strategy", "test") else "right", overflow="fold")
    for r in rows:
        t.add_row(*(Text(v) for v in r.values()))
    console.print(t)
    console.print(Text(verdict_line(c), style="bold yellow" if c.verdict_changed else "bold green"))
    for label, run in (("A", c.a), ("B", c.b)):
        for reason in run.reasons[:2]:
            console.print(Text(f"  {label} ({run.verdict}): {reason}"))


def html(c: Comparison) -> str:
    env = Environment(loader=PackageLoader("advisor", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("compare.html.j2").render(c=c, rows=table_rows(c), verdict=verdict_line(c))
