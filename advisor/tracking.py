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


def _facts(results: dict, settings: dict) -> tuple[dict, dict[str, float], dict[str, str]]:
    """(params, metrics, tags) from a results dict: the only place this module reads one."""
    run, task = results["run"], results["task"]
    params = {"task": task["name"], "task_hash": hash_json(task.get("files") or {}), "seed": run.get("seed"),
              "n_eval": task.get("n_eval"), "advisor_version": results.get("advisor_version"),
              **{k: v for section, value in settings.items() for k, v in _flatten(value, section).items()}}
    for role, m in (run.get("models") or {}).items():
        if m:
            params[f"model {role}"] = m.get("name")
    metrics: dict[str, float] = {}
    for s in results["strategies"]:
        name = s["name"]
        params[f"{name}/model"] = s.get("model")
        for k, v in (s.get("setup") or {}).items():  # strategy settings and set-up measurements
            if isinstance(v, (int, float, str, bool)):
                params[f"{name}/setup.{k}"] = v
        acc = s.get("accuracy") or {}
        cons = s.get("consistency") or {}
        values = {
            "accuracy": acc.get("mean"), "accuracy_low": acc.get("low"), "accuracy_high": acc.get("high"),
            "self_agreement": (cons.get("self_agreement") or {}).get("mean"),
            "paraphrase_agreement": (cons.get("paraphrase_agreement") or {}).get("mean"),
            "prompt_tokens": (s.get("tokens") or {}).get("prompt_mean"),
            "completion_tokens": (s.get("tokens") or {}).get("completion_mean"),
            "cost_per_request": (s.get("economics") or {}).get("cost_per_request"),
            "total_cost": (s.get("economics") or {}).get("total_cost"),
            "latency_p50_s": (s.get("latency") or {}).get("p50_seconds"),
        }
        metrics |= {metric_key(name, k): float(v) for k, v in values.items() if isinstance(v, (int, float))}
    rec = results.get("recommendation") or {}
    tags = {"advisor.verdict": str(rec.get("strategy")), "advisor.command": str(run.get("command") or "")}
    return params, metrics, tags


def _adapters(results: dict) -> list[Path]:
    """Adapter folders the run's rows used (from their set-up details), those that exist."""
    found = []
    for s in results["strategies"]:
        path = (s.get("setup") or {}).get("adapter")
        if isinstance(path, str) and Path(path).is_dir():
            found.append(Path(path))
    return found


def log_mlflow(results: dict, out_dir: Path, settings: dict, history_id: int | None = None) -> str:
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


def report(report_to: list[str], results: dict, out_dir: Path, settings: dict,
           history_id: int | None = None) -> dict[str, str]:
    """Tracker name -> its run id."""
    return {name: log_mlflow(results, out_dir, settings, history_id) for name in report_to if name == "mlflow"}
