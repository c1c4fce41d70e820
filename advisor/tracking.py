"""`--report-to mlflow`: a finished run as one MLflow run, where teams already look.

Logs to whatever MLFLOW_TRACKING_URI names (a server, a `sqlite:///` file, a local
folder); the experiment is the task's name. Params: the task's content hash, models,
seed and strategy settings; metrics per row (`<row>/accuracy`, its interval,
consistency, tokens, cost, latency); the verdict as a tag; report.html, results.json
and the run's adapters as artifacts. mlflow is an optional extra: `advisor[mlflow]`.
"""
from __future__ import annotations

import re
from pathlib import Path

from advisor.cache import hash_json
from advisor.results import Results

TRACKERS = ("mlflow",)


class TrackingError(Exception):
    """A tracker that is not installed or not named right (bad input)."""


def check(report_to: list[str]) -> None:
    """Before the run: an unknown tracker or a missing package fails in a second, not after an hour."""
    for name in report_to:
        if name not in TRACKERS:
            raise TrackingError(f"--report-to {name!r}: known trackers: {', '.join(TRACKERS)}")
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise TrackingError("--report-to mlflow needs the mlflow package: pip install 'advisor[mlflow]'") from None


def metric_key(row: str, metric: str) -> str:
    """MLflow keys take letters, digits, `_-./ `: `few-shot+rag` becomes `few-shot_rag`."""
    return re.sub(r"[^\w\-./ ]", "_", f"{row}/{metric}")


def _flatten(x, prefix: str) -> dict:
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _flatten(val, f"{prefix}.{key}").items()}
    return {prefix: x}


def _facts(results: Results, settings: dict) -> tuple[dict, dict[str, float], dict[str, str]]:
    """(params, metrics, tags) of a run."""
    run, task = results.run, results.task
    params = {"task": task.name, "task_hash": hash_json(task.files), "seed": run.seed,
              "n_eval": task.n_eval, "advisor_version": results.advisor_version,
              **{k: v for section, value in settings.items() for k, v in _flatten(value, section).items()}}
    for role, m in run.models.items():
        if m:
            params[f"model {role}"] = m.name
    metrics: dict[str, float] = {}
    for s in results.strategies:
        params[f"{s.name}/model"] = s.model
        for k, v in s.setup.model_dump(exclude_none=True).items():  # strategy settings and set-up measurements
            if isinstance(v, (int, float, str, bool)):
                params[f"{s.name}/setup.{k}"] = v
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
        metrics |= {metric_key(s.name, k): float(v) for k, v in values.items() if isinstance(v, (int, float))}
    # advisor.verdict: the recommended row, or the leading one when advisor.status is "not enough evidence"
    tags = {"advisor.verdict": results.recommendation.strategy, "advisor.status": results.recommendation.status,
            "advisor.command": run.command}
    return params, metrics, tags


def _adapters(results: Results) -> list[Path]:
    """Adapter folders the run's rows used (from their set-up details), those that exist."""
    return [Path(s.setup.adapter) for s in results.strategies if s.setup.adapter and Path(s.setup.adapter).is_dir()]


def log_mlflow(results: Results, out_dir: Path, settings: dict, history_id: int | None = None) -> str:
    """One MLflow run for this advisor run; returns its run id. `settings`: the task's strategy sections."""
    import mlflow

    params, metrics, tags = _facts(results, settings)
    if history_id is not None:
        tags["advisor.history_id"] = str(history_id)
    mlflow.set_experiment(f"advisor/{params['task']}")
    with mlflow.start_run(run_name=f"{params['task']} seed {params['seed']}") as active:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        for name in ("report.html", "results.json", "report.md", "examples.csv"):
            if (out_dir / name).is_file():
                mlflow.log_artifact(str(out_dir / name))
        for adapter in _adapters(results):
            mlflow.log_artifacts(str(adapter), artifact_path=f"adapters/{adapter.name}")
        return active.info.run_id


def report(report_to: list[str], results: Results, out_dir: Path, settings: dict,
           history_id: int | None = None) -> dict[str, str]:
    """Tracker name -> its run id."""
    return {name: log_mlflow(results, out_dir, settings, history_id) for name in report_to if name == "mlflow"}
