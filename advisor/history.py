"""Run history: every finished `advisor run` as one record in an embedded SQLite store.

Teams edit the prompt, add documents, retrain and ask "did that help?"; the output
folder is overwritten, the history is not. One record holds what `advisor compare`
needs: the task's content hash and a diff-able snapshot of task.yaml, the models,
seed and version, every row's numbers and every answer's score, and the verdict.

Safe under concurrent runs: WAL journal, a busy timeout, and each run written in one
`BEGIN IMMEDIATE` transaction (all of it or none of it). The schema is versioned by
`PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i + 1, applied when a writer opens
the store. A store this process may not write (a read-only file or folder, a team's shared
copy) is opened read-only and never migrated: any version from `READABLE_FROM` on is read
as it is, the columns it lacks read as their defaults.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from advisor.cache import cache_dir, hash_json
from advisor.formatting import money
from advisor.results import Results

ENV = "ADVISOR_HISTORY"
FILE = "history.sqlite"
BUSY_TIMEOUT_MS = 60_000

MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created TEXT NOT NULL, task_name TEXT NOT NULL, task_hash TEXT NOT NULL,
            task_yaml TEXT NOT NULL, task_files TEXT NOT NULL, models TEXT NOT NULL,
            seed INTEGER, advisor_version TEXT, n_eval INTEGER, verdict TEXT, reasons TEXT NOT NULL,
            out_dir TEXT, command TEXT, retries INTEGER NOT NULL DEFAULT 0, gates TEXT NOT NULL DEFAULT '[]')""",
        """CREATE TABLE rows (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, position INTEGER NOT NULL,
            strategy TEXT NOT NULL, family TEXT, model TEXT,
            accuracy REAL, accuracy_low REAL, accuracy_high REAL,
            cost_per_request REAL, total_cost REAL, prompt_tokens REAL, completion_tokens REAL,
            latency_p50_s REAL, generation_seconds REAL, setup_seconds REAL,
            PRIMARY KEY (run_id, strategy))""",
        """CREATE TABLE answers (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, example_id TEXT NOT NULL,
            strategy TEXT NOT NULL, score REAL, answer TEXT, PRIMARY KEY (run_id, example_id, strategy))""",
        "CREATE INDEX runs_task ON runs(task_name)",
        "CREATE INDEX runs_out ON runs(out_dir)",
    ],
    [  # 1 -> 2: the verdict's status, and each eval item's content hash (compare pairs the same question)
        "ALTER TABLE runs ADD COLUMN status TEXT",
        "ALTER TABLE runs ADD COLUMN items TEXT NOT NULL DEFAULT '{}'",
    ],
    [  # 2 -> 3: eval items people reviewed (advisor review)
        "ALTER TABLE runs ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 0",
    ],
    [  # 3 -> 4: the verdict's fragility (how many item scores, changed, would change it) and those items
        "ALTER TABLE runs ADD COLUMN fragility INTEGER",
        "ALTER TABLE runs ADD COLUMN fragility_items TEXT NOT NULL DEFAULT '[]'",
    ],
]
READABLE_FROM = 1  # the oldest version a read-only store can be read at (version 0 has no tables)


class HistoryError(Exception):
    """A history store that cannot be read or a run that is not in it (bad input)."""


@dataclass(frozen=True)
class RowRecord:
    strategy: str
    family: str | None
    model: str | None
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    cost_per_request: float | None
    total_cost: float | None
    prompt_tokens: float | None
    completion_tokens: float | None
    latency_p50_s: float | None
    generation_seconds: float | None  # answering the eval set once (batched), what --dry-run scales
    setup_seconds: float | None  # training + indexing, 0 when reused from the cache


@dataclass(frozen=True)
class RunRecord:
    """One run as history keeps it; also built straight from a results.json (id None)."""

    id: int | None
    created: str
    task_name: str
    task_hash: str  # sha256 over the task folder's file hashes
    task_yaml: str  # the task file's text at run time ('' when unknown)
    task_files: dict[str, str]  # relative path -> sha256
    models: dict[str, str]  # role -> "model name @fingerprint"
    seed: int | None
    advisor_version: str | None
    n_eval: int | None
    verdict: str | None
    reasons: tuple[str, ...]
    out_dir: str | None
    command: str | None
    retries: int
    rows: tuple[RowRecord, ...]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # strategy -> example id -> score
    answers: dict[str, dict[str, str]] = field(default_factory=dict)  # strategy -> example id -> answer
    gates: tuple[dict, ...] = ()
    status: str | None = None  # "recommended" or "not enough evidence"; None in records older than it
    items: dict[str, str] = field(default_factory=dict)  # example id -> item_hash(input, references); {} when older
    reviewed: int = 0  # eval items people labelled (advisor review); their labels replaced the automatic scores
    fragility: int | None = None  # item scores that, changed, change the verdict (None: none within reach, or older)
    fragility_items: tuple[dict, ...] = ()  # those changes: {"id", "row", "from", "to"}

    def row(self, strategy: str) -> RowRecord | None:
        return next((r for r in self.rows if r.strategy == strategy), None)

    @property
    def best_accuracy(self) -> float | None:
        values = [r.accuracy for r in self.rows if r.accuracy is not None]
        return max(values) if values else None


def item_hash(question: str, references: tuple[str, ...] | list[str]) -> str:
    """An eval item's content: its question and references. Two runs ask the same question when it is equal."""
    return hash_json({"input": question, "expected": list(references)})[:16]


def history_path(override: Path | None = None) -> Path:
    """--history, else $ADVISOR_HISTORY, else history.sqlite in the user cache."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ENV)
    return Path(env) if env else cache_dir() / FILE


# ------------------------------------------------------------ results.json -> record


def record_from_results(results: Results, task_yaml: str, out_dir: Path | str | None,
                        gates: list[dict] | None = None) -> RunRecord:
    """A run's record from its results (advisor.results): what the store keeps of it."""
    rows = []
    for s in results.strategies:
        setup = s.setup.train_seconds + s.setup.index_seconds
        rows.append(RowRecord(
            strategy=s.name, family=str(s.family), model=s.model, accuracy=s.accuracy.mean,
            accuracy_low=s.accuracy.low, accuracy_high=s.accuracy.high,
            cost_per_request=s.economics.cost_per_request if s.economics else None,
            total_cost=s.economics.total_cost if s.economics else None,
            prompt_tokens=s.tokens.prompt_mean, completion_tokens=s.tokens.completion_mean,
            latency_p50_s=s.latency.p50_seconds, generation_seconds=s.throughput.generation_seconds,
            setup_seconds=setup))
    scores: dict[str, dict[str, float]] = {r.strategy: {} for r in rows}
    answers: dict[str, dict[str, str]] = {r.strategy: {} for r in rows}
    for ex in results.examples:
        for name, a in ex.answers.items():
            scores.setdefault(name, {})[ex.id] = a.score
            answers.setdefault(name, {})[ex.id] = a.text
    # "name @fingerprint": a model revised under the same name still shows as a change in `advisor compare`.
    models = {role: m.name + (f" @{m.fingerprint[:12]}" if m.fingerprint else "")
              for role, m in results.run.models.items() if m}
    rec, task, run = results.recommendation, results.task, results.run
    fragile = rec.fragility
    return RunRecord(
        id=None, created=run.started, task_name=task.name, task_hash=hash_json(task.files),
        task_yaml=task_yaml, task_files=dict(task.files), models=models, seed=run.seed,
        advisor_version=results.advisor_version, n_eval=task.n_eval, verdict=rec.strategy,
        reasons=tuple(rec.reasons), out_dir=str(out_dir) if out_dir is not None else None,
        command=run.command, retries=run.retries, rows=tuple(rows), scores=scores,
        answers=answers, gates=tuple(gates or ()), status=rec.status,
        items={ex.id: item_hash(ex.input, ex.expected) for ex in results.examples},
        reviewed=results.review.items if results.review else 0,
        fragility=fragile.count if fragile else None,
        fragility_items=tuple(i.model_dump(mode="json", by_alias=True) for i in fragile.items) if fragile else ())


# ------------------------------------------------------------------- the store


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the store; autocommit mode, transactions are explicit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA foreign_keys = ON")
        _migrate(con, path)
    except sqlite3.DatabaseError as e:
        con.close()
        raise HistoryError(f"{path}: not a usable advisor history store ({e}); "
                           f"point --history or ${ENV} at another file") from None
    except BaseException:
        con.close()
        raise
    return con


def _migrate(con: sqlite3.Connection, path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise _newer(path, version)
    if version == len(MIGRATIONS):
        return
    con.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see the new version
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[version:]:
            for statement in step:
                con.execute(statement)
        con.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _newer(path: Path, version: int) -> HistoryError:
    return HistoryError(f"{path}: schema version {version} is newer than this advisor knows ({len(MIGRATIONS)}); "
                        "upgrade advisor or use another --history")


def record(path: Path, rec: RunRecord) -> int:
    """Write one run in one transaction; returns its id."""
    con = connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            created = rec.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
            cur = con.execute(
                "INSERT INTO runs (created, task_name, task_hash, task_yaml, task_files, models, seed, advisor_version,"
                " n_eval, verdict, reasons, out_dir, command, retries, gates, status, items, reviewed, fragility,"
                " fragility_items) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (created, rec.task_name, rec.task_hash, rec.task_yaml, json.dumps(rec.task_files),
                 json.dumps(rec.models), rec.seed, rec.advisor_version, rec.n_eval, rec.verdict,
                 json.dumps(list(rec.reasons)), rec.out_dir, rec.command, rec.retries, json.dumps(list(rec.gates)),
                 rec.status, json.dumps(rec.items), rec.reviewed, rec.fragility,
                 json.dumps(list(rec.fragility_items))))
            run_id = cur.lastrowid
            con.executemany(
                "INSERT INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, i, r.strategy, r.family, r.model, r.accuracy, r.accuracy_low, r.accuracy_high,
                  r.cost_per_request, r.total_cost, r.prompt_tokens, r.completion_tokens, r.latency_p50_s,
                  r.generation_seconds, r.setup_seconds)
                 for i, r in enumerate(rec.rows)])
            con.executemany(
                "INSERT INTO answers VALUES (?,?,?,?,?)",
                [(run_id, ex_id, strategy, s, rec.answers.get(strategy, {}).get(ex_id))
                 for strategy, by_id in rec.scores.items() for ex_id, s in by_id.items()])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return run_id
    finally:
        con.close()


def _run_from_row(con: sqlite3.Connection, r: sqlite3.Row, with_answers: bool) -> RunRecord:
    rows = tuple(RowRecord(*x) for x in con.execute(
        "SELECT strategy, family, model, accuracy, accuracy_low, accuracy_high, cost_per_request, total_cost,"
        " prompt_tokens, completion_tokens, latency_p50_s, generation_seconds, setup_seconds FROM rows WHERE run_id = ? ORDER BY position", (r["id"],)))
    scores: dict[str, dict[str, float]] = {}
    answers: dict[str, dict[str, str]] = {}
    if with_answers:
        for ex_id, strategy, s, text in con.execute(
                "SELECT example_id, strategy, score, answer FROM answers WHERE run_id = ? ORDER BY rowid", (r["id"],)):
            scores.setdefault(strategy, {})[ex_id] = s
            answers.setdefault(strategy, {})[ex_id] = text
    return RunRecord(
        id=r["id"], created=r["created"], task_name=r["task_name"], task_hash=r["task_hash"], task_yaml=r["task_yaml"],
        task_files=json.loads(r["task_files"]), models=json.loads(r["models"]), seed=r["seed"],
        advisor_version=r["advisor_version"], n_eval=r["n_eval"], verdict=r["verdict"],
        reasons=tuple(json.loads(r["reasons"])), out_dir=r["out_dir"], command=r["command"], retries=r["retries"],
        rows=rows, scores=scores, answers=answers, gates=tuple(json.loads(r["gates"])),
        status=r["status"] if "status" in r.keys() else None,
        items=json.loads(r["items"]) if "items" in r.keys() else {},
        reviewed=r["reviewed"] if "reviewed" in r.keys() else 0,
        fragility=r["fragility"] if "fragility" in r.keys() else None,
        fragility_items=tuple(json.loads(r["fragility_items"])) if "fragility_items" in r.keys() else ())


def writable(path: Path) -> bool:
    """Whether this process may change the store: the file and its folder (WAL's -wal and -shm live beside it).
    Write bits count as well as access: root may write anything, but a store chmod'ed read-only stays as it is."""
    return all(os.access(p, os.W_OK) and p.stat().st_mode & 0o222 for p in (path, path.parent))


def open_for_reading(path: Path) -> sqlite3.Connection:
    """A store to read: migrated when this process may write it, else opened read-only as it is."""
    path = Path(path)
    if writable(path):
        return connect(path)
    # Nobody writes a store whose file or folder has no write bit at all: read it as immutable (no lock, no -shm
    # file left beside it), unless a -wal file holds changes not yet in it. Otherwise a writer may be at work.
    frozen = not all(p.stat().st_mode & 0o222 for p in (path, path.parent))
    immutable = frozen and not Path(f"{path}-wal").exists()
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else ""), uri=True,
                              timeout=BUSY_TIMEOUT_MS / 1000)
        version = con.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise HistoryError(f"{path}: not a readable advisor history store ({e}); "
                           f"point --history or ${ENV} at another file") from None
    if version > len(MIGRATIONS) or version < READABLE_FROM:
        con.close()
        if version > len(MIGRATIONS):
            raise _newer(path, version)
        raise HistoryError(f"{path}: schema version {version} is too old to read, and the store is read-only so it "
                           f"cannot be migrated; open it once with write access, or point --history elsewhere")
    return con


def _query(path: Path, sql: str, args: tuple, with_answers: bool) -> list[RunRecord]:
    if not Path(path).exists():
        return []
    con = open_for_reading(path)
    con.row_factory = sqlite3.Row
    try:
        return [_run_from_row(con, r, with_answers) for r in con.execute(sql, args).fetchall()]
    finally:
        con.close()


def list_runs(path: Path, task: str | None = None) -> list[RunRecord]:
    """Oldest first; `task` filters by task name."""
    if task:
        return _query(path, "SELECT * FROM runs WHERE task_name = ? ORDER BY id", (task,), False)
    return _query(path, "SELECT * FROM runs ORDER BY id", (), False)


def get_run(path: Path, run_id: int) -> RunRecord:
    found = _query(path, "SELECT * FROM runs WHERE id = ?", (run_id,), True)
    if not found:
        raise HistoryError(f"{path}: no run {run_id} in the history (see `advisor history`)")
    return found[0]


def set_reviewed(path: Path, out_dir: Path, started: str, items: int) -> int | None:
    """Record that people reviewed `items` eval items of the run written to `out_dir` that started at `started`
    (advisor review); the run's id, or None when the history does not hold that run."""
    if not Path(path).exists():
        return None
    con = connect(path)
    try:
        found = con.execute("SELECT id FROM runs WHERE out_dir = ? AND created = ? ORDER BY id DESC LIMIT 1",
                            (str(Path(out_dir).resolve()), started)).fetchone()
        if found is None:
            return None
        con.execute("UPDATE runs SET reviewed = ? WHERE id = ?", (items, found[0]))
        return found[0]
    finally:
        con.close()


def latest_for_out_dir(path: Path, out_dir: Path) -> RunRecord | None:
    """The newest recorded run written to this folder, if any (its task.yaml snapshot is there)."""
    found = _query(path, "SELECT * FROM runs WHERE out_dir = ? ORDER BY id DESC LIMIT 1",
                   (str(Path(out_dir).resolve()),), True)
    return found[0] if found else None


# ------------------------------------------------------------ delete, prune


def require_writable(path: Path) -> None:
    if not Path(path).exists() or not writable(Path(path)):
        raise HistoryError(f"{path}: the history store is read-only (or absent); nothing was deleted")


def delete(path: Path, run_ids: list[int]) -> None:
    """Delete these runs (their rows and answers go with them) in one transaction."""
    require_writable(path)
    con = connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            missing = [i for i in run_ids if con.execute("SELECT 1 FROM runs WHERE id = ?", (i,)).fetchone() is None]
            if missing:
                raise HistoryError(f"{path}: no run {', '.join(map(str, missing))} in the history (see `advisor history`)")
            con.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in run_ids])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def to_prune(runs: list[RunRecord], keep: int) -> list[RunRecord]:
    """The runs beyond the newest `keep` of each task (runs oldest first, as list_runs gives them)."""
    by_task: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_task.setdefault(r.task_name, []).append(r)
    return sorted((r for same in by_task.values() for r in same[:max(len(same) - keep, 0)]), key=lambda r: r.id)


# ------------------------------------------------------------ for scripts

CSV_FIELDS = ("id", "created", "task", "task_hash", "seed", "n_eval", "verdict", "status", "fragility",
              "best_accuracy", "cost_per_request", "models", "advisor_version", "out_dir")


def summary(r: RunRecord) -> dict:
    """One run as plain data (the answers left out): `advisor history --json` and `--csv`."""
    pick = r.row(r.verdict) if r.verdict else None
    return {"id": r.id, "created": r.created, "task": r.task_name, "task_hash": r.task_hash, "seed": r.seed,
            "n_eval": r.n_eval, "verdict": r.verdict, "status": r.status, "fragility": r.fragility,
            "fragility_items": list(r.fragility_items), "reviewed": r.reviewed, "best_accuracy": r.best_accuracy,
            "cost_per_request": pick.cost_per_request if pick else None, "models": r.models,
            "advisor_version": r.advisor_version, "out_dir": r.out_dir, "command": r.command,
            "reasons": list(r.reasons),
            "rows": [{"strategy": x.strategy, "accuracy": x.accuracy, "accuracy_low": x.accuracy_low,
                      "accuracy_high": x.accuracy_high, "cost_per_request": x.cost_per_request,
                      "total_cost": x.total_cost} for x in r.rows]}


def to_csv(runs: list[RunRecord]) -> str:
    """One line per run; `models` as "role=name @fingerprint" joined by "; "."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in runs:
        w.writerow(summary(r) | {"models": "; ".join(f"{k}={v}" for k, v in sorted(r.models.items()))})
    return buf.getvalue()


# ------------------------------------------------------------ for people

def model_labels(runs: list[RunRecord]) -> dict[str, str]:
    """Each distinct set of models, as "role name @fingerprint, ..." -> a short label m1, m2, ... (the legend)."""
    labels: dict[str, str] = {}
    for r in runs:
        labels.setdefault(_models_text(r.models), f"m{len(labels) + 1}")
    return labels


def _models_text(models: dict[str, str]) -> str:
    return ", ".join(f"{role} {name}" for role, name in sorted(models.items())) or "–"


def verdict_cell(r: RunRecord, wide: bool = False) -> str:
    """The verdict as history shows it: the row, in parentheses when it only leads (not enough evidence), and
    marked "!" when one changed item score would change it (the wide table gives the count its own column)."""
    cell = f"({r.verdict})" if r.status == "not enough evidence" else str(r.verdict)
    return cell + ("!" if r.fragility == 1 and not wide else "")


def table(runs: list[RunRecord], wide: bool = False) -> Table:
    """The runs as a table that fits 80 columns: no cell wraps, so no word is ever broken; only the task and the
    verdict give way, ending in "…" when a name is longer than its share (`--wide` or `--json` give everything).
    Models are labelled m1, m2, ... (the legend under the table)."""
    labels = model_labels(runs)
    cells = []
    for r in runs:
        s = summary(r)
        cells.append([str(r.id), r.created[:16].replace("T", " "), r.task_name,
                      _models_text(r.models) if wide else labels[_models_text(r.models)], str(r.seed),
                      verdict_cell(r, wide), "–" if s["best_accuracy"] is None else f"{s['best_accuracy']:.0%}",
                      "–" if s["cost_per_request"] is None else money(s["cost_per_request"])]
                     + (["–" if r.fragility is None else str(r.fragility)] if wide else []))
    t = Table(box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False,
              padding=(0, 1, 0, 0))  # one space between columns: the box's divider
    flexible = {"task": 6, "verdict": 8}  # the only columns that may narrow, down to this width
    for i, name in enumerate(("id", "when", "task", "models", "seed", "verdict", "best", "$/req")
                             + (("fragility",) if wide else ())):
        width = max([len(name)] + [len(c[i]) for c in cells])
        t.add_column(name, justify="right" if name in ("id", "seed", "best", "$/req", "fragility") else "left", no_wrap=True,
                     overflow="ellipsis", min_width=min(flexible.get(name, width), width),
                     ratio=1 if name in flexible else None)
    for c in cells:
        t.add_row(*(Text(x) for x in c))
    return t


def terminal(runs: list[RunRecord], console: Console, title: str, wide: bool = False) -> None:
    console.print(Text(title, style="bold"), soft_wrap=True)
    t = table(runs, wide)
    if wide:  # every field whole, in lines as long as they need (the terminal wraps them, not the table)
        width = max(console.width, Measurement.get(console, console.options.update(width=10_000), t).maximum)
        Console(file=console.file, width=width, force_terminal=console.is_terminal, no_color=console.no_color).print(t)
    else:
        console.print(t)
        for models, label in model_labels(runs).items():
            console.print(Text(f"{label}: {models}"), highlight=False)
    console.print(Text("when: UTC; verdict in parentheses: not enough evidence, the leading row is not a "
                       "recommendation; !: one changed item score would change the verdict (its fragility; --wide "
                       "gives each run's); best: best accuracy; $/req: the verdict's cost per request", style="dim"))
