"""`--report-to mlflow|wandb`: a finished run as one tracker run, where teams already look.

MLflow logs to whatever MLFLOW_TRACKING_URI names (a server, a `sqlite:///` file, a local
folder), in the experiment `advisor/<task>`. W&B logs to the project WANDB_PROJECT (default
`advisor`): online when W&B credentials are configured (WANDB_API_KEY, `wandb login`), else
offline, into `<out>/wandb` (or WANDB_DIR) for a later `wandb sync`; WANDB_MODE overrides both.
Each tracker gets the same facts: params (the task's content hash, models, seed, strategy
settings; each row's name, model and settings), metrics per row (`<row>/accuracy`, its
interval, consistency, tokens, cost, latency), the verdict, and report.html, results.json,
report.md, examples.csv and the run's adapters as artifacts. Every name goes through `Names`,
the one place that makes it valid for a tracker. Extras: `advisor[mlflow]`, `advisor[wandb]`.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from advisor.cache import hash_json
from advisor.results import Results

EXTRAS = {"mlflow": "advisor[mlflow]", "wandb": "advisor[wandb]"}  # tracker -> the install that brings it
TRACKERS = tuple(EXTRAS)
REPORT_FILES = ("report.html", "results.json", "report.md", "examples.csv")


class TrackingError(Exception):
    """A tracker that is not installed or not named right (bad input, before the run)."""


class TrackerError(Exception):
    """A tracker that could not log a finished run (its server, store or credentials); the outputs are written."""


@dataclass(frozen=True)
class Names:
    """What a tracker accepts in one part of a name; "/" joins the parts (`<row>/<field>`)."""

    refused: str  # a character class the tracker refuses: each such character becomes "_"
    first: str  # what a part must start with; "_" goes before one that does not
    fold_case: bool  # the tracker tells names apart without case
    max_row: int = 64  # a longer row name is cut (and told apart by its hash)

    def part(self, name: str) -> str:
        clean = re.sub(self.refused, "_", name)
        return clean if re.match(self.first, clean) else "_" + clean

    def key(self, *parts: str) -> str:
        return "/".join(self.part(p) for p in parts)

    def same(self, key: str) -> str:
        """The form in which the tracker compares names."""
        return key.casefold() if self.fold_case else key


NAMES = {
    # mlflow/utils/validation.py: alphanumerics (its \w takes any Unicode letter; kept to ASCII), `_-. /`, and
    # `:` except on Windows (left out, so a store moves between systems). A part is never "." or ".." (which
    # MLflow refuses as a path).
    "mlflow": Names(r"[^A-Za-z0-9_\-. ]", r"[A-Za-z0-9_]", fold_case=False),
    # W&B sorts and filters names matching [_a-zA-Z][_a-zA-Z0-9]* (GraphQL); "/" groups them into sections;
    # it tells names apart without case (docs.wandb.ai, metric naming constraints).
    "wandb": Names(r"[^A-Za-z0-9_]", r"[A-Za-z_]", fold_case=True),
}


def row_names(rows: list[str], names: Names) -> dict[str, str]:
    """Row -> its name as one part of a tracker's keys, distinct for distinct rows.

    A name is cleaned (`lora+rag` -> `lora_rag`); a cleaned or cut name that meets another row's gets `_` and
    8 hex digits of its own hash, so two rows never share keys (`a+b` and `a_b` stay apart).
    """
    cleaned = {r: names.part(r)[:names.max_row] for r in rows}
    groups = defaultdict(list)
    for r in sorted(rows):
        groups[names.same(cleaned[r])].append(r)
    out = {}
    for group in groups.values():
        keep = group[0] if len(group) == 1 else next((r for r in group if cleaned[r] == r), None)
        for r in group:
            digest = hashlib.sha256(r.encode()).hexdigest()[:8]
            out[r] = cleaned[r] if r == keep else f"{cleaned[r][:names.max_row - 9]}_{digest}"
    return {r: out[r] for r in rows}


def _keyed(pairs: list[tuple[tuple[str, ...], object]], names: Names, what: str) -> dict[str, object]:
    """(name parts, value) pairs as tracker keys; two names that would meet are an error, never a silent overwrite."""
    out: dict[str, object] = {}
    seen: dict[str, tuple[str, ...]] = {}
    for parts, value in pairs:
        key = names.key(*parts)
        if names.same(key) in seen:
            raise ValueError(f"{what} {'/'.join(parts)!r} and {'/'.join(seen[names.same(key)])!r} "
                             f"would both be named {key!r}")
        seen[names.same(key)] = parts
        out[key] = value
    return out


def _flatten(x, prefix: str) -> dict:
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _flatten(val, f"{prefix}.{key}").items()}
    return {prefix: x}


@dataclass(frozen=True)
class Facts:
    """What a tracker records of a run, every key valid for that tracker."""

    params: dict[str, object]
    metrics: dict[str, float]
    tags: dict[str, str]


def facts(results: Results, settings: dict, names: Names, history_id: int | None = None) -> Facts:
    """The run's params, per-row metrics and verdict tags, named for one tracker. `settings`: the task's sections."""
    run, task = results.run, results.task
    rows = row_names([s.name for s in results.strategies], names)
    params: list = [(("task",), task.name), (("task_hash",), hash_json(task.files)), (("seed",), run.seed),
                    (("n_eval",), task.n_eval), (("advisor_version",), results.advisor_version)]
    params += [((k,), v) for section, value in settings.items() for k, v in _flatten(value, section).items()]
    params += [((f"model {role}",), m.name) for role, m in run.models.items() if m]
    metrics: list = []
    for s in results.strategies:
        row = rows[s.name]
        params += [((row, "name"), s.name), ((row, "model"), s.model)]
        params += [((row, f"setup.{k}"), v) for k, v in s.setup.model_dump(exclude_none=True).items()
                   if isinstance(v, (int, float, str, bool))]  # strategy settings and set-up measurements
        cons = s.consistency
        values = {
            "accuracy": s.accuracy.mean, "accuracy_low": s.accuracy.low, "accuracy_high": s.accuracy.high,
            "self_agreement": cons.self_agreement.mean if cons.self_agreement else None,
            "paraphrase_agreement": cons.paraphrase_agreement.mean if cons.paraphrase_agreement else None,
            "prompt_tokens": s.tokens.prompt_mean, "completion_tokens": s.tokens.completion_mean,
            "cost_per_request": s.economics.cost_per_request if s.economics else None,
            "total_cost": s.economics.total_cost if s.economics else None,
            "latency_p50_s": s.latency.p50_seconds,
        }
        metrics += [((row, k), float(v)) for k, v in values.items() if isinstance(v, (int, float))]
    # advisor.verdict: the recommended row, or the leading one when advisor.status is "not enough evidence"
    tags = [(("advisor.verdict",), results.recommendation.strategy),
            (("advisor.status",), results.recommendation.status), (("advisor.command",), run.command)]
    if history_id is not None:
        tags.append((("advisor.history_id",), str(history_id)))
    return Facts(_keyed(params, names, "param"), _keyed(metrics, names, "metric"), _keyed(tags, names, "tag"))


def _adapters(results: Results) -> list[Path]:
    """Adapter folders the run's rows used (from their set-up details), those that exist."""
    return [Path(s.setup.adapter) for s in results.strategies if s.setup.adapter and Path(s.setup.adapter).is_dir()]


def log_mlflow(results: Results, out_dir: Path, settings: dict, history_id: int | None = None) -> str:
    """One MLflow run for this advisor run; says which."""
    import mlflow

    f = facts(results, settings, NAMES["mlflow"], history_id)
    task = results.task.name
    mlflow.set_experiment(f"advisor/{task}")
    with mlflow.start_run(run_name=f"{task} seed {results.run.seed}") as active:
        mlflow.log_params({k: str(v)[:500] for k, v in f.params.items()})
        mlflow.log_metrics(f.metrics)
        mlflow.set_tags(f.tags)
        for name in REPORT_FILES:
            if (out_dir / name).is_file():
                mlflow.log_artifact(str(out_dir / name))
        for adapter in _adapters(results):
            mlflow.log_artifacts(str(adapter), artifact_path=f"adapters/{adapter.name}")
        return f"run {active.info.run_id}"


def log_wandb(results: Results, out_dir: Path, settings: dict, history_id: int | None = None) -> str:
    """One W&B run: params as its config, metrics and the verdict in its summary, the reports as an artifact."""
    import wandb

    names = NAMES["wandb"]
    f = facts(results, settings, names, history_id)
    task = results.task.name
    # WANDB_MODE wins; else online with credentials from anywhere W&B reads them, offline without (never a prompt)
    mode = None if os.environ.get("WANDB_MODE") else (
        "online" if wandb.login(prompt=False, verify=False) else "offline")
    # console off: the run's output is advisor.log already; no git (a remote URL can carry a token), no code
    # copy, no system metrics (the run is logged after the fact: they would describe the logging, not the run)
    quiet = wandb.Settings(console="off", quiet=True, disable_git=True, disable_code=True, x_disable_stats=True)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "advisor"), group=task, job_type="advisor-run",
                     name=f"{task} seed {results.run.seed}", config=f.params, mode=mode,
                     dir=os.environ.get("WANDB_DIR") or str(out_dir), settings=quiet)
    try:
        run.summary.update({**f.metrics, **f.tags})
        artifact = wandb.Artifact(f"{names.part(task)}-report", type="advisor-report",
                                  description=f"advisor run of {task}: report, results and adapters")
        for name in REPORT_FILES:
            if (out_dir / name).is_file():
                artifact.add_file(str(out_dir / name))
        for adapter in _adapters(results):
            artifact.add_dir(str(adapter), name=f"adapters/{adapter.name}")
        run.log_artifact(artifact)
        where = (f" (offline: upload with `wandb sync {Path(run.dir).parent}`)" if run.offline
                 else f" ({run.url})" if run.url else "")
        run.finish()
    except BaseException:
        run.finish(exit_code=1)
        raise
    finally:
        wandb.teardown()  # W&B's service writes the run's transaction log out only here (wandb 0.31), not at finish
    return f"run {run.id}{where}"


LOGGERS: dict[str, Callable[..., str]] = {"mlflow": log_mlflow, "wandb": log_wandb}


def check(report_to: list[str]) -> None:
    """Before the run: an unknown tracker or a missing package fails in a second, not after an hour."""
    for name in report_to:
        if name not in TRACKERS:
            raise TrackingError(f"--report-to {name!r}: known trackers: {', '.join(TRACKERS)}")
        try:
            __import__(name)
        except ImportError:
            raise TrackingError(f"--report-to {name} needs the {name} package: "
                                f"pip install '{EXTRAS[name]}'") from None


def report(report_to: list[str], results: Results, out_dir: Path, settings: dict, history_id: int | None,
           say: Callable[[str], None]) -> None:
    """Log the run to each tracker, after every output is written; one that fails does not stop the others."""
    failed = []
    for name in dict.fromkeys(report_to):
        try:
            say(f"logged to {name}: {LOGGERS[name](results, out_dir, settings, history_id)}")
        except Exception as e:  # the tracker's own errors: a store, a server, credentials
            first_line = next(iter(str(e).strip().splitlines()), "")
            failed.append(f"{name} ({type(e).__name__}: {first_line})")
    if failed:
        raise TrackerError(f"--report-to: could not log the run to {'; '.join(failed)}. The run's outputs are "
                           f"written ({out_dir}; the history and --junit-xml too): fix the tracker and run the same "
                           "command again (the answers come from the cache)")
