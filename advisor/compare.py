"""`advisor compare A B`: what changed between two runs, and did it help.

A and B are history run ids or output folders. The answer has four parts: the inputs
that changed (task.yaml fields, task files, models, seed), per-row accuracy deltas
with a paired test on the eval items both runs asked (the same McNemar / permutation
test as within a run, `advisor.stats.paired_compare`), cost deltas, and whether the
verdict changed (its row or its status: recommended or not enough evidence) and what
each run gave as its reasons.

Items are paired by id and content: two runs asked the same question when its input and
references hash alike (`history.item_hash`). An automatic id (`eval-N`) that moved because
a line was inserted still pairs by content; an item edited under its old id is listed as
changed and left out of the paired test, as are items only one run has.
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
class Pairing:
    """Which eval item of A is which of B."""

    pairs: tuple[tuple[str, str], ...]  # (id in A, id in B): the same question and references
    moved: tuple[tuple[str, str], ...]  # the pairs whose id differs (an automatic id that shifted)
    changed: tuple[str, ...]  # the same id asks another question or expects another answer: not compared
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    by_content: bool  # False: a run recorded before item contents were kept; paired by id alone


@dataclass(frozen=True)
class RowDelta:
    strategy: str
    accuracy_a: float | None
    accuracy_b: float | None
    shared: int  # paired eval items both runs answered with this row
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
    pairing: Pairing

    @property
    def status_changed(self) -> bool:
        """Recommended in one run, not enough evidence in the other (unknown in records older than the status)."""
        return None not in (self.a.status, self.b.status) and self.a.status != self.b.status

    @property
    def verdict_changed(self) -> bool:
        return self.a.verdict != self.b.verdict or self.status_changed


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


def _item_ids(run: history.RunRecord) -> list[str]:
    """The run's eval item ids in order (from its content hashes, else from its scores)."""
    if run.items:
        return list(run.items)
    return list(dict.fromkeys(i for by_id in run.scores.values() for i in by_id))


def pair_items(a: history.RunRecord, b: history.RunRecord) -> Pairing:
    """Pair the items that ask the same question: same id and content first, then same content under another id
    (in order of appearance), then list the rest as changed (same id, other content) or found in one run only."""
    ids_a, ids_b = _item_ids(a), _item_ids(b)
    if not (a.items and b.items):
        in_a, in_b = set(ids_a), set(ids_b)
        return Pairing(tuple((i, i) for i in ids_a if i in in_b), (), (), tuple(i for i in ids_a if i not in in_b),
                       tuple(j for j in ids_b if j not in in_a), False)
    pairs = [(i, i) for i in ids_a if b.items.get(i) == a.items[i]]
    same = {i for i, _ in pairs}
    waiting: dict[str, list[str]] = {}  # content -> B's unpaired ids with it, in order
    for j in ids_b:
        if j not in same:
            waiting.setdefault(b.items[j], []).append(j)
    moved = []
    for i in ids_a:
        if i not in same and waiting.get(a.items[i]):
            moved.append((i, waiting[a.items[i]].pop(0)))
    paired_a, paired_b = same | {i for i, _ in moved}, same | {j for _, j in moved}
    rest_a = [i for i in ids_a if i not in paired_a]
    rest_b = [j for j in ids_b if j not in paired_b]
    changed = set(rest_a) & set(rest_b)
    return Pairing(tuple(pairs + moved), tuple(moved), tuple(i for i in rest_a if i in changed),
                   tuple(i for i in rest_a if i not in changed), tuple(j for j in rest_b if j not in changed), True)


def row_deltas(a: history.RunRecord, b: history.RunRecord, pairing: Pairing, seed: int = 0) -> list[RowDelta]:
    names = [r.strategy for r in a.rows] + [r.strategy for r in b.rows if a.row(r.strategy) is None]
    out = []
    for name in names:
        ra, rb = a.row(name), b.row(name)
        sa, sb = a.scores.get(name, {}), b.scores.get(name, {})
        shared = [(i, j) for i, j in pairing.pairs if i in sa and j in sb]
        c = paired_compare(f"B {name}", [sb[j] for _, j in shared], f"A {name}", [sa[i] for i, _ in shared], seed) \
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
    pairing = pair_items(a, b)
    return Comparison(a, b, label_a, label_b, tuple(changes(a, b)), diff, tuple(row_deltas(a, b, pairing, seed)),
                      pairing)


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


def _test_name(test: str) -> str:
    """The test, in a word for the table (the legend under it says what each is)."""
    return "McNemar" if test.startswith("McNemar") else "permutation" if "permutation" in test else test


def table_rows(c: Comparison) -> list[dict[str, str]]:
    """The per-row table, as text: terminal and HTML show the same cells."""
    return [{"Strategy": r.strategy, "Acc A": _pct(r.accuracy_a), "Acc B": _pct(r.accuracy_b),
             "Δ paired (95% CI)": DASH if r.diff is None else f"{_pp(r.diff)} ({100 * r.low:+.0f}…{100 * r.high:+.0f})",
             "items": str(r.shared), "p": DASH if r.p_value is None else f"{r.p_value:.3g}",
             "test": _test_name(r.test), "sig.": "yes" if r.significant else "no",
             "$/req A": _usd(r.cost_a), "$/req B": _usd(r.cost_b), "Δ $/req": _usd_delta(r.cost_a, r.cost_b)}
            for r in c.rows]


TESTS_LEGEND = ("McNemar: McNemar's exact test on the items one run got right and the other wrong (pass/fail "
                "scores); permutation: a sign-flip permutation test of the mean difference (graded scores).")


def verdict_text(run: history.RunRecord) -> str:
    """A run's verdict with its status: "lora+rag (recommended)", "lora+rag (not enough evidence)"."""
    return f"{run.verdict} ({run.status})" if run.status else str(run.verdict)


def verdict_line(c: Comparison) -> str:
    if not c.verdict_changed:
        return f"verdict unchanged: {verdict_text(c.b)}"
    return f"verdict changed: {verdict_text(c.a)} -> {verdict_text(c.b)}"


def pairing_lines(p: Pairing) -> list[str]:
    """How the items were paired, in words; empty when every item of both runs is the same question under its id."""
    out = []
    if not p.by_content:
        out.append(f"{len(p.pairs)} items paired by id alone: a run recorded before item contents were kept cannot "
                   "show whether an item's question or reference changed")
    if p.moved:
        out.append(f"{len(p.moved)} paired by content under another id (A -> B): "
                   + ", ".join(f"{i} -> {j}" for i, j in p.moved))
    if p.changed:
        out.append(f"{len(p.changed)} changed (same id, another question or reference; not compared): "
                   + ", ".join(p.changed))
    for label, ids in (("A", p.only_a), ("B", p.only_b)):
        if ids:
            out.append(f"{len(ids)} only in {label} (not compared): " + ", ".join(ids))
    return out


def _table(title: str, rows: list[dict[str, str]], columns: list[str]) -> Table:
    """Some columns of the per-row table; a cell never wraps (a number or a test name broken over two lines is
    unreadable): only the strategy gives way, ending in "…", when the terminal is too narrow."""
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1, 0, 0))
    for i, col in enumerate(columns):
        width = max([len(col)] + [len(r[col]) for r in rows])
        t.add_column(col, justify="left" if col in ("Strategy", "test") else "right", no_wrap=True,
                     overflow="ellipsis", min_width=min(width, 8) if i == 0 else width)
    for r in rows:
        t.add_row(*(Text(r[col]) for col in columns))
    return t


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
    if rows:  # accuracy and cost in two tables: each fits 80 columns, no cell wraps, no column is dropped
        accuracy = [k for k in rows[0] if not k.startswith(("$", "Δ $"))]
        cost = ["Strategy"] + [k for k in rows[0] if k.startswith(("$", "Δ $"))]
        console.print(_table("Accuracy (Δ = B − A on the eval items both runs asked)", rows, accuracy))
        console.print(Text(TESTS_LEGEND, style="dim"))
        console.print(_table("Cost per request", rows, cost))
    lines = pairing_lines(c.pairing)
    if lines:
        console.print(Text("Items:", style="bold"))
        for line in lines:
            console.print(Text(f"  {line}"))
    console.print(Text(verdict_line(c), style="bold yellow" if c.verdict_changed else "bold green"))
    for label, run in (("A", c.a), ("B", c.b)):
        for reason in run.reasons[:2]:
            console.print(Text(f"  {label}, {verdict_text(run)}: {reason}"))


def html(c: Comparison) -> str:
    env = Environment(loader=PackageLoader("advisor", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("compare.html.j2").render(c=c, rows=table_rows(c), verdict=verdict_line(c),
                                                        pairing=pairing_lines(c.pairing), tests=TESTS_LEGEND,
                                                        verdicts={"A": verdict_text(c.a), "B": verdict_text(c.b)})
