"""The run: task -> strategies -> answers -> scores -> economics -> verdict -> results.json.

`run` measures; `analyze` turns measurements + the task's situation into economics
and a recommendation, and is also what `advisor roi` re-runs without any model.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from advisor import __version__
from advisor.cache import atomic_write_text
from advisor.charts import dig
from advisor.experiments import data_curve, forgetting, freshness
from advisor.economics import StrategyCosts, break_even_requests_per_day, economics, payback_days, volume_sweep
from advisor.models import Embedder, load_generator
from advisor.recommend import Row, recommend
from advisor.scoring import agree, mean_ci, paired_compare, passes_format, score
from advisor.task import EconomicsSpec, GeneratorSpec, Task
from strategies import Context, Strategy, registry
from strategies.rag import Rag

RESULTS = "results.json"
LOCK = ".advisor.lock"
LOG = "advisor.log"
log = logging.getLogger("advisor")


class RunError(Exception):
    pass


def select_strategies(task: Task, names: list[str] | None) -> list[type[Strategy]]:
    known = registry()
    wanted = names or task.spec.strategies or list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise RunError(f"unknown strategies {unknown}; known: {', '.join(known)}")
    if not task.documents:
        wanted = [n for n in wanted if known[n].family == "prompting" or known[n].family == "finetune"]
    return [known[n] for n in wanted]


def load_generators(task: Task, classes: list[type[Strategy]], endpoints: bool) -> dict[str, Any]:
    """Generator name -> loaded generator, for the generators the selected strategies use.

    `endpoints=True` loads (and checks) only the endpoints, `False` only the local
    models: the cheap network checks run before anything is written, the local
    loads under the progress bar. Either fails with a ModelError naming the model.
    """
    out: dict[str, Any] = {}
    local: dict[str, Any] = {}  # one copy of a local model, however many names point at it
    for cls in classes:
        name, spec = task.spec.models.for_strategy(cls.name)
        if name in out or spec.is_endpoint != endpoints:
            continue
        if spec.is_endpoint:
            out[name] = load_generator(spec, name)
        else:
            out[name] = local[spec.hf] = local.get(spec.hf) or load_generator(spec, name)
    return out


def pricing(spec: GeneratorSpec, answers: list, gen_seconds: float) -> dict:
    """How a row's requests are priced, stated in results.json and the report.

    An endpoint with token prices is hosted; a local model with a price per hour is
    self-hosted: measured seconds per request at batch throughput times that price.
    Otherwise the task's economics token prices apply (they stay adjustable in `advisor roi`).
    """
    if not spec.is_endpoint and spec.hardware_price_per_hour is not None:
        return {"kind": "self-hosted", "hardware_price_per_hour": spec.hardware_price_per_hour,
                "seconds_per_request": gen_seconds / max(1, len(answers))}
    if spec.input_price_per_mtok is not None:
        return {"kind": "hosted" if spec.is_endpoint else "model token prices",
                "input_price_per_mtok": spec.input_price_per_mtok, "output_price_per_mtok": spec.output_price_per_mtok}
    return {"kind": "task token prices"}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu", "numpy", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _hardware() -> dict:
    import torch

    hw = {"machine": platform.machine(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def evaluate_strategy(strategy: Strategy, task: Task) -> dict:
    """Answer the eval set (greedy), then the consistency probes; score everything."""
    spec, sc = task.spec, task.spec.scoring
    inputs = [ex.input for ex in task.eval]
    answers = strategy.answer(inputs)
    # Measured generation time, also when answers come from the cache (each keeps its measured share).
    gen_seconds = sum(a.seconds for a in answers)
    scores = [score(a.text, ex, sc) for a, ex in zip(answers, task.eval)]
    formats = [passes_format(a.text, sc) for a in answers]

    # Self-agreement: N sampled answers per item; share of pairs of samples that agree.
    cons = spec.consistency
    # Items spread evenly over the eval set, so every kind of item (tag) is probed, not just the first rows.
    n_items = min(cons.items, len(task.eval))
    items = sorted({round(k * len(task.eval) / n_items) for k in range(n_items)}) if n_items else []
    self_agreement = None
    if cons.samples >= 2 and items:
        samples = [strategy.answer([inputs[i] for i in items], temperature=cons.temperature, sample_index=s)
                   for s in range(cons.samples)]
        per_item = []
        for j, i in enumerate(items):
            texts = [samples[s][j].text for s in range(cons.samples)]
            pairs = [(a, b) for k, a in enumerate(texts) for b in texts[k + 1:]]
            per_item.append(np.mean([agree(a, b, task.eval[i], sc) for a, b in pairs]))
        self_agreement = mean_ci(per_item, spec.seed).as_dict()

    # Robustness: paraphrased inputs answered alike (greedy).
    para = [(i, p) for i, ex in enumerate(task.eval) for p in ex.paraphrases]
    paraphrase_agreement = None
    if para:
        para_answers = strategy.answer([p for _, p in para])
        alike = [agree(answers[i].text, pa.text, task.eval[i], sc) for (i, _), pa in zip(para, para_answers)]
        paraphrase_agreement = mean_ci([float(x) for x in alike], spec.seed).as_dict()

    # Latency as a user sees it: single requests, no batching, no cache.
    latencies = [strategy.time_one(inputs[i]) for i in range(min(spec.latency.requests, len(inputs)))]

    tags = sorted({t for ex in task.eval for t in ex.tags})
    by_tag = {t: mean_ci([s for s, ex in zip(scores, task.eval) if t in ex.tags], spec.seed).as_dict() for t in tags}
    retrieval = None
    with_source = [(a, ex) for a, ex in zip(answers, task.eval) if ex.source]
    if with_source and any(a.sources for a, _ in with_source):
        ranks = [a.sources.index(ex.source) + 1 if ex.source in a.sources else None for a, ex in with_source]
        retrieval = {"k": spec.rag.top_k, "n": len(ranks),
                     "hit_at_k": float(np.mean([r is not None for r in ranks])),
                     "mrr": float(np.mean([1 / r if r else 0.0 for r in ranks]))}
    completion = [a.completion_tokens for a in answers]
    generator_name, generator_spec = task.spec.models.for_strategy(strategy.name)
    return {
        "name": strategy.name,
        "description": strategy.description,
        "family": strategy.family,
        "complexity": strategy.complexity,
        "model": strategy.generator.display_name + (" + LoRA adapter" if strategy.adapter_path else ""),
        "generator": generator_name,
        "pricing": pricing(generator_spec, answers, gen_seconds),
        "accuracy": mean_ci(scores, spec.seed).as_dict(),
        "by_tag": by_tag,
        "format_adherence": mean_ci([float(f) for f in formats], spec.seed).as_dict() if sc.format else None,
        "consistency": {"self_agreement": self_agreement, "paraphrase_agreement": paraphrase_agreement,
                        "samples": cons.samples, "temperature": cons.temperature, "items": len(items)},
        "tokens": {"prompt_mean": float(np.mean([a.prompt_tokens for a in answers])),
                   "completion_mean": float(np.mean(completion)),
                   "prompt_max": int(max(a.prompt_tokens for a in answers))},
        "latency": {"p50_seconds": _percentile(latencies, 50), "p95_seconds": _percentile(latencies, 95),
                    "n": len(latencies)},
        "throughput": {"generation_seconds": gen_seconds, "batch_size": spec.generation.batch_size,
                       "requests_per_second": len(answers) / gen_seconds if gen_seconds else None,
                       "completion_tokens_per_second": sum(completion) / gen_seconds if gen_seconds else None},
        "setup": {"train_seconds": strategy.setup.train_seconds, "index_seconds": strategy.setup.index_seconds,
                  "knowledge_in_weights": strategy.setup.knowledge_in_weights, **strategy.setup.details},
        "retrieval": retrieval,
        "dropped_examples": int(sum(a.dropped_examples for a in answers)),
        "_answers": answers,
        "_scores": scores,
        "_formats": formats,
    }


def rows_from_results(results: dict) -> list[Row]:
    rows = []
    for s in results["strategies"]:
        costs = StrategyCosts(
            name=s["name"], prompt_tokens=s["tokens"]["prompt_mean"], completion_tokens=s["tokens"]["completion_mean"],
            train_seconds=s["setup"]["train_seconds"], index_seconds=s["setup"]["index_seconds"],
            knowledge_in_weights=s["setup"]["knowledge_in_weights"], accuracy=s["accuracy"]["mean"],
            family=s["family"], pricing=s.get("pricing"),
        )
        rows.append(Row(s["name"], s["family"], s["complexity"], s["accuracy"]["mean"], s["accuracy"]["low"],
                        s["accuracy"]["high"], costs, {t: e["mean"] for t, e in s["by_tag"].items()},
                        s["format_adherence"]["mean"] if s["format_adherence"] else None))
    return rows


def analyze(results: dict, spec: EconomicsSpec) -> dict:
    """Economics and recommendation from measured results under the given assumptions."""
    rows = rows_from_results(results)
    comparisons = {(c["a"], c["b"]): c for c in results["comparisons"]}
    rec = recommend(rows, comparisons, spec, results["task"]["n_train"])
    econ = {r.name: economics(r.costs, spec) for r in rows}
    base = econ[rec["baseline"]]
    for s in results["strategies"]:
        e = econ[s["name"]]
        s["economics"] = e.as_dict() | {
            "break_even_requests_per_day": break_even_requests_per_day(e, base, spec.horizon_days)
            if s["name"] != base.name else None,
            "payback_days": payback_days(e, base, spec.requests_per_day) if s["name"] != base.name else None,
        }
    results["assumptions"] = spec.model_dump()
    results["economics"] = {"baseline": base.name, "sweep": volume_sweep([r.costs for r in rows], spec)}
    drop = dig(results, "experiments", "forgetting", "adapters", rec["strategy"], "drop")
    if drop is not None and drop >= 0.1:
        rec["cautions"].append(f"its adapter loses {drop:.0%} on a general-ability probe the base model answers "
                               "(forgetting experiment): check that nothing outside the task matters to you.")
    results["recommendation"] = rec
    return results


@dataclass
class Experiments:
    """Which experiments to add to a run (each lands in results.json under `experiments`)."""

    freshness: bool = True  # when the task names updated_documents and eval_updated
    forgetting: bool = True  # when some strategy uses an adapter
    data_curve: list[int] = field(default_factory=list)  # train sizes; empty = off


def run(task: Task, out_dir: Path, strategy_names: list[str] | None = None, seed: int | None = None,
        console: Console | None = None, command: str = "", experiments: Experiments | None = None) -> dict:
    """Run under a lock on the output folder: a second run into the same folder refuses."""
    classes = select_strategies(task, strategy_names)  # a bad name fails before anything is written
    # Endpoints are checked (key variable set, server reachable, model served) before anything is written.
    endpoints = load_generators(task, classes, endpoints=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out_dir / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"{out_dir} is in use by another advisor run (lock {out_dir / LOCK}); "
                       "wait for it or choose another --out") from None
    # Appended to, so a resumed run's log shows the interrupted attempt too.
    handler = log_to(logging.FileHandler(out_dir / LOG, encoding="utf-8"))
    try:
        return _run(task, out_dir, classes, seed, console, command, experiments, endpoints)
    except BaseException as e:
        log.error("run stopped: %s: %s", type(e).__name__, e)
        raise
    finally:
        logging.getLogger("advisor").removeHandler(handler)
        handler.close()
        lock.release()


def log_to(handler: logging.Handler) -> logging.Handler:
    """Send the run's stage log (what ran, what was reused from the cache, training progress) to `handler`."""
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger("advisor")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _run(task, out_dir, classes, seed, console, command, experiments, endpoints) -> dict:
    console = console or Console(stderr=True)
    experiments = experiments or Experiments()
    if seed is not None:
        task.spec.seed = seed
    quiet_libraries()
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console, transient=False)
    evaluated, prepared = [], []
    with progress:
        log.info("run started: task %s, seed %s, strategies %s", task.name, task.seed, [c.name for c in classes])
        step = progress.add_task("loading generator", total=1)
        # The data curve trains the `lora` row's adapter, so it needs lora's (local) model even if lora is not a row.
        lora = [registry()["lora"]] if experiments.data_curve else []
        loaded = endpoints | load_generators(task, classes + lora, endpoints=False)
        names = ", ".join(g.display_name for g in loaded.values())
        progress.update(step, completed=1, description=f"loaded {names}")
        by_strategy = {cls.name: loaded[task.spec.models.for_strategy(cls.name)[0]] for cls in classes + lora}
        default = loaded.get("default") or next(iter(loaded.values()))
        ctx = Context(task, default, lambda: Embedder(task.spec.models.embedder), out_dir, by_strategy)
        for cls in classes:
            strat = cls(ctx)
            step = progress.add_task(f"{cls.name}: preparing", total=2)
            log.info("%s: preparing", cls.name)
            strat.prepare()
            progress.update(step, advance=1, description=f"{cls.name}: answering {len(task.eval)} eval items")
            log.info("%s: answering", cls.name)
            evaluated.append(evaluate_strategy(strat, task))
            prepared.append(strat)
            acc = evaluated[-1]["accuracy"]["mean"]
            progress.update(step, advance=1, description=f"{cls.name}: done, accuracy {acc:.0%}")
            log.info("%s: done, accuracy %.3f", cls.name, acc)
        found = {}
        if experiments.freshness and task.updated_documents and task.eval_updated:
            step = progress.add_task("freshness: documents changed, answering again", total=1)
            found["freshness"] = freshness(task, prepared)
            progress.update(step, completed=1)
        if experiments.forgetting and any(s.adapter_path for s in prepared):
            step = progress.add_task("forgetting: general-ability probe", total=1)
            found["forgetting"] = forgetting(task, prepared)
            progress.update(step, completed=1)
        if experiments.data_curve:
            step = progress.add_task(f"data curve: {len(experiments.data_curve) + 1} trainings", total=1)
            found["data_curve"] = data_curve(task, registry()["lora"], ctx, experiments.data_curve)
            progress.update(step, completed=1)
    results = assemble(task, evaluated, ctx, started, time.perf_counter() - t_start, command)
    results["experiments"] = found
    results = analyze(results, task.spec.economics)
    write_outputs(results, out_dir)
    log.info("run finished: recommendation %s", results["recommendation"]["strategy"])
    return results


def train(task: Task, strategy_names: list[str] | None = None, seed: int | None = None) -> dict[str, dict]:
    """Train (or reuse from the cache) the adapters of the task's fine-tuning rows, and nothing else.

    This is the step `accelerate launch` / `torchrun` spreads over several processes
    (GPUs); `advisor run` afterwards finds the adapters in the cache and only evaluates.
    The main process converts the model and builds the retrieval index first, so the
    others read them from the cache instead of writing the same files at the same time.
    """
    import torch
    from accelerate import PartialState

    classes = [c for c in select_strategies(task, strategy_names) if "finetune" in c.family]
    if not classes:
        raise RunError("none of the selected strategies fine-tunes (no family with 'finetune'); nothing to train")
    if seed is not None:
        task.spec.seed = seed
    quiet_libraries()
    # Before any model loads: it pins each process to its own GPU ("cuda" is then that GPU); on a
    # machine without one, cpu=True lets several CPU processes talk over gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        loaded = load_generators(task, classes, endpoints=False)
        by_strategy = {cls.name: loaded[task.spec.models.for_strategy(cls.name)[0]] for cls in classes}
        ctx = Context(task, next(iter(loaded.values())), lambda: Embedder(task.spec.models.embedder), Path("."),
                      by_strategy)
        strategies = [cls(ctx) for cls in classes]
        for s in strategies:
            if isinstance(s, Rag):
                s.prepare_index()
    found = {}
    for s in strategies:
        s.prepare()
        found[s.name] = s.setup.details["training"]
    return found


def quiet_libraries() -> None:
    """Our own progress bars say what is happening; the libraries' bars and notices only add noise.

    Through their verbosity settings; deprecations are not hidden (the tests turn ours into errors). The
    one exception is a library's call into another that the user cannot act on: peft 0.21 reads
    transformers' deprecated `is_gradient_checkpointing` whenever it wraps a model (removed only in
    transformers 6, which pyproject.toml excludes).
    """
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning,
                            module="transformers.modeling_utils")


def assemble(task: Task, evaluated: list[dict], ctx: Context, started, seconds: float, command: str) -> dict:
    seed = task.spec.seed
    comparisons = []
    for i, a in enumerate(evaluated):
        for b in evaluated[i + 1:]:
            comparisons.append(paired_compare(a["name"], a["_scores"], b["name"], b["_scores"], seed).as_dict())
    examples = []
    for k, ex in enumerate(task.eval):
        examples.append({
            "id": ex.id, "input": ex.input, "expected": list(ex.references), "tags": list(ex.tags), "source": ex.source,
            "answers": {s["name"]: {"text": s["_answers"][k].text, "score": s["_scores"][k], "format_ok": s["_formats"][k],
                                    "sources": s["_answers"][k].sources, "prompt_tokens": s["_answers"][k].prompt_tokens,
                                    "completion_tokens": s["_answers"][k].completion_tokens} for s in evaluated},
        })
    strategies = [{k: v for k, v in s.items() if not k.startswith("_")} for s in evaluated]
    embedder = ctx._embedder
    return {
        "advisor_version": __version__,
        "task": {"name": task.name, "description": task.description, "root": str(task.root.resolve()), "files": task.files,
                 "n_train": len(task.train), "n_eval": len(task.eval), "n_documents": len(task.documents),
                 "tags": sorted({t for ex in task.eval for t in ex.tags}),
                 "instructions_tokens": ctx.generator.count_tokens(task.instructions)},
        "run": {"seed": seed, "started": started.isoformat(timespec="seconds"), "seconds": seconds, "command": command,
                "models": {**{("generator" if name == "default" else f"generator {name}"):
                               {"name": g.display_name, "fingerprint": g.fingerprint}
                               for name, g in _generators(task, ctx).items()},
                           "embedder": {"name": embedder.display_name, "fingerprint": embedder.fingerprint} if embedder else None},
                "versions": _versions(), "hardware": _hardware()},
        "scoring": task.spec.scoring.model_dump(),
        "strategies": strategies,
        "comparisons": comparisons,
        "examples": examples,
        "experiments": {},
    }


def _generators(task: Task, ctx: Context) -> dict[str, Any]:
    """Generator name -> generator, for those the run's strategies used."""
    named = {task.spec.models.for_strategy(s)[0]: g for s, g in ctx.generators.items()}
    return named or {"default": ctx.generator}


def write_outputs(results: dict, out_dir: Path) -> None:
    from advisor.report import write_reports

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RESULTS, json.dumps(results, indent=1, default=float))
    atomic_write_text(out_dir / "examples.csv", examples_csv(results))
    write_reports(results, out_dir)


def examples_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "strategy", "input", "expected", "tags", "answer", "score", "format_ok", "sources",
                "prompt_tokens", "completion_tokens"])
    for ex in results["examples"]:
        for name, a in ex["answers"].items():
            w.writerow([ex["id"], name, ex["input"], " | ".join(ex["expected"]), " ".join(ex["tags"]), a["text"],
                        a["score"], a["format_ok"], " ".join(a["sources"]), a["prompt_tokens"], a["completion_tokens"]])
    return buf.getvalue()


def load_results(out_dir: Path) -> dict:
    path = out_dir / RESULTS if out_dir.is_dir() else out_dir
    if not path.exists():
        raise RunError(f"{path}: no results.json here; run `advisor run TASK --out DIR` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
