"""The run, as a recipe read top to bottom:

    prepare rows -> answer -> score -> experiments -> economics -> decide -> write

`run` measures; `analyze` turns measurements (a results.Measured) + the task's situation
into economics and a recommendation (a results.Results), and is also what `advisor roi`
re-runs without any model, on the stored Results.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence, TypeVar

import numpy as np
from filelock import FileLock, Timeout
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from advisor import __version__, progress
from advisor.backends import load_generator, load_generators
from advisor.budget import DEFAULT as DEFAULT_BUDGET, apply_budget, recorded as budget_recorded
from advisor.cache import atomic_write_text
from advisor.economics import (StrategyCosts, break_even_requests_per_day, economics, payback_days, pricing,
                               volume_sweep)
from advisor.evaluate import Evaluation, Limits, Settled, compare_rows, evaluate_sequentially, evaluate_strategy
from advisor.experiments import data_curve, forgetting, freshness, load_probe
from advisor.kinds import Family
from advisor.labels import apply_labels, counts
from advisor.models import Embedder, release_memory
from advisor.recommend import MIN_EVAL_ITEMS, Row, decide, explain, settled_in_money
from advisor.results import (Assumptions, Comparison, EconomicsSummary, Estimate, ExampleResult, Measured,
                             Recommendation, Results, ReviewLabel, StrategyEconomics, concluded, examples_csv,
                             with_economics, write_results)
from advisor.scoring import Judge, Tools, method_for
from advisor.sequential import Stop
from advisor.stats import compare_all, mean_ci
from advisor.task import EconomicsSpec, GeneratorSpec, Task, cluster_of, describe_method, method_names
from advisor.value import priced
from advisor.workload import requests_per_row
from strategies import Answer, Context, Strategy, registry, select_strategies

M = TypeVar("M", bound=Measured)
LOCK = ".advisor.lock"
LOG = "advisor.log"
log = logging.getLogger("advisor")


class RunError(Exception):
    pass


@dataclass
class Experiments:
    """Which experiments to add to a run (each lands in results.json under `experiments`)."""

    freshness: bool = True  # when the task names updated_documents and eval_updated
    forgetting: bool = True  # when some strategy uses an adapter
    data_curve: list[int] = field(default_factory=list)  # train sizes; empty = off


# ------------------------------------------------------------------- set-up


def finetune_row() -> type[Strategy]:
    """The plain fine-tuning row (the data curve trains it on growing subsets)."""
    return next(cls for cls in registry().values() if cls.family == Family.FINETUNE)


def build_context(task: Task, seed: int, classes: list[type[Strategy]], loaded: dict[str, Any], work_dir: Path,
                  reuse_only: bool = False) -> Context:
    """The one place a run's Context is made: each strategy gets the generator `models.use` names for it."""
    by_strategy = {cls.name: loaded[task.spec.models.for_strategy(cls.name)[0]] for cls in classes}
    default = loaded.get("default") or next(iter(loaded.values()))
    return Context(task, seed, default, lambda: Embedder(task.spec.models.embedder), work_dir, by_strategy, reuse_only)


def money_stop(task: Task, seed: int) -> Settled | None:
    """When the task prices quality, sequential evaluation also stops every row once the answers so far settle
    the decision in money (recommend.settled_in_money). The rows are costed as the verdict costs them
    (economics.py, from their measured tokens, seconds and set-up); what the run measures after the rounds (the
    freshness experiment) is not known yet, and the verdict takes it into account afterwards."""
    spec = task.spec.economics
    if not priced(spec):
        return None

    def costs(s: Strategy, answers: list[Answer], accuracy: float) -> StrategyCosts:
        return StrategyCosts(
            name=s.name, prompt_tokens=float(np.mean([a.prompt_tokens for a in answers])),
            completion_tokens=float(np.mean([a.completion_tokens for a in answers])),
            train_seconds=s.setup.train_seconds, index_seconds=s.setup.index_seconds,
            knowledge_in_weights=s.setup.knowledge_in_weights, accuracy=accuracy, family=Family(s.family),
            pricing=pricing(task.spec.models.for_strategy(s.name)[1], len(answers), sum(a.seconds for a in answers)))

    def settled(rows: list[Strategy], scores: dict[str, list[float]], clusters: list[str],
                answers: dict[str, list[Answer]]) -> Stop | None:
        totals = [economics(costs(s, answers[s.name], float(np.mean(scores[s.name]))), spec).total_cost for s in rows]
        return settled_in_money([s.name for s in rows], [s.complexity for s in rows],
                                [tuple(scores[s.name]) for s in rows], totals, spec, clusters, seed)
    return settled


def scoring_tools(task: Task, ctx: Context, loaded: dict[str, Any]) -> Tools:
    """The embedder (the rows' own, loaded on first use) and, when the task scores with one, the LLM judge,
    calibrated against the human-scored answers eval rows carry before any row is scored."""
    spec = task.spec.scoring.judge
    if spec is None or not task.spec.scoring.uses("judge"):
        return Tools(lambda: ctx.embedder)
    gen_spec = (task.spec.models.generators[spec.generator] if spec.generator != "default"
                else GeneratorSpec(hf=task.spec.models.generator))
    generator = loaded.get(spec.generator) or load_generator(gen_spec, spec.generator, task.spec.models.dtype)
    judge = Judge(generator, spec, generator.display_name, task.spec.generation.batch_size, ctx.seed,
                  task.spec.generation.batch_tokens)
    judge.calibrate(task.eval)
    return Tools(lambda: ctx.embedder, judge)


def log_to(handler: logging.Handler) -> logging.Handler:
    """Send the run's stage log (what ran, what was reused from the cache, training progress) to `handler`."""
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger("advisor")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


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


# ---------------------------------------------------------------------- run


def run(task: Task, out_dir: Path, seed: int, strategy_names: list[str] | None = None,
        console: Console | None = None, command: str = "", experiments: Experiments | None = None,
        budget: str = DEFAULT_BUDGET, max_items: int | None = None, max_cost: float | None = None) -> Results:
    """Run under a lock on the output folder: a second run into the same folder refuses.

    `budget` (advisor.budget) fills the settings the task file leaves unset; the results record which.
    Under every budget but `full` the rows are evaluated sequentially (advisor.evaluate.evaluate_sequentially:
    a row significantly worse than another stops answering); `max_items` and `max_cost` (dollars on priced
    endpoints) cap the eval items under any budget.
    """
    task, filled = apply_budget(task, budget)
    classes = select_strategies(task, strategy_names)  # a bad name fails before anything is written
    # Endpoints are checked (key variable set, server reachable, model served) before anything is written.
    endpoints = load_generators(task.spec.models, [c.name for c in classes], endpoints=True)
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
        limits = (Limits(drop=budget != "full", max_items=max_items, max_cost=max_cost,
                         settled=money_stop(task, seed), min_items=MIN_EVAL_ITEMS)
                  if budget != "full" or max_items is not None or max_cost is not None else None)
        return _run(task, out_dir, seed, classes, console or Console(stderr=True), command,
                    experiments or Experiments(), endpoints, budget_recorded(budget, filled, [c.family for c in classes]),
                    limits)
    except BaseException as e:
        log.error("run stopped: %s: %s", type(e).__name__, e)
        raise
    finally:
        logging.getLogger("advisor").removeHandler(handler)
        handler.close()
        lock.release()


def _run(task: Task, out_dir: Path, seed: int, classes: list[type[Strategy]], console: Console, command: str,
         experiments: Experiments, endpoints: dict[str, Any], budget: dict, limits: Limits | None = None) -> Results:
    quiet_libraries()
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    display = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)
    evaluated: list[Evaluation] = []
    prepared: list[Strategy] = []
    with display, progress.showing(display):
        log.info("run started: task %s, seed %s, strategies %s", task.name, seed, [c.name for c in classes])
        # 1. models. The data curve trains the plain fine-tuning row, so it needs that row's (local) model.
        curve_row = [finetune_row()] if experiments.data_curve else []
        with progress.bar("loading the models", 1):
            loaded = endpoints | load_generators(task.spec.models, [c.name for c in classes + curve_row], endpoints=False)
            progress.advance()
            progress.describe(f"loaded {', '.join(g.display_name for g in loaded.values())}")
        ctx = build_context(task, seed, classes + curve_row, loaded, out_dir)
        tools = scoring_tools(task, ctx, loaded)
        if tools.judge is not None:
            cal = tools.judge.calibration
            log.info("judge %s: kappa %.3f (%.3f to %.3f) on %d human-scored answers: %s", tools.judge.name,
                     cal.kappa, cal.low, cal.high, cal.n, "counts" if cal.calibrated else "uncalibrated, not counted")

        # 2. each row: prepare (prompt, index, adapter), answer, score. Training opens its own bar.
        # Sequentially: every row prepared first, then the items in rounds; the experiments see the rows still in.
        sequential = None
        if limits is not None:
            for cls in classes:
                log.info("%s: preparing", cls.name)
                prepared.append(cls(ctx))
                prepared[-1].prepare()
                release_memory()
            evaluated, sequential = evaluate_sequentially(prepared, task, seed, tools, limits)
            for e in evaluated:
                log.info("%s: done, %s after %d of %d items, accuracy %.3f on them", e.name, e.summary["evaluated"]["status"],
                         e.summary["evaluated"]["items"], len(task.eval), e.summary["accuracy"]["mean"])
            prepared = [s for s, e in zip(prepared, evaluated) if e.summary["evaluated"]["status"] != "dropped"]
        for cls in classes if limits is None else []:
            strategy = cls(ctx)
            log.info("%s: preparing", cls.name)
            strategy.prepare()
            log.info("%s: answering", cls.name)
            with progress.bar(f"{cls.name}: answering", requests_per_row(task)):
                evaluated.append(evaluate_strategy(strategy, task, seed, tools))
                acc = evaluated[-1].summary["accuracy"]["mean"]
                progress.describe(f"{cls.name}: answered, accuracy {acc:.0%}")
            prepared.append(strategy)
            log.info("%s: done, accuracy %.3f", cls.name, acc)
            release_memory()  # so the next row's peak does not stack on this one's freed pages

        # 3. experiments on the prepared rows.
        found = {}
        if experiments.freshness and task.updated_documents and task.eval_updated:
            with progress.bar("freshness: documents changed, answering again", 2 * len(task.eval_updated) * len(prepared)):
                found["freshness"] = freshness(task, prepared, seed, tools)
        if experiments.forgetting and any(s.adapter_path for s in prepared):
            adapters = {s.adapter_path for s in prepared if s.adapter_path}
            with progress.bar("forgetting: general-ability probe", len(load_probe()) * (1 + len(adapters))):
                found["forgetting"] = forgetting(task, prepared, seed)
        if experiments.data_curve:
            with progress.bar(f"data curve: {len(experiments.data_curve) + 1} trainings", None):
                found["data_curve"] = data_curve(task, curve_row[0], ctx, experiments.data_curve, tools)

    # 4. economics and the verdict, 5. write.
    results = assemble(task, seed, evaluated, ctx, started, time.perf_counter() - t_start, command)
    results["run"]["budget"] = budget
    if sequential is not None:
        results["run"]["sequential"] = sequential
    if tools.judge is not None:
        results["judge"] = {"generator": tools.judge.name, "rubric": tools.judge.spec.rubric,
                            **tools.judge.calibration.as_dict()}
    results["experiments"] = found
    results["decision"] = task.spec.decision.model_dump()
    # Checked against the declared schema once, here; the decision core reads and returns the typed models.
    written = write_outputs(analyze(Measured.model_validate(results), task.spec.economics), out_dir)
    log.info("run finished: recommendation %s", written.recommendation.strategy)
    return written


def train(task: Task, seed: int, strategy_names: list[str] | None = None, budget: str = DEFAULT_BUDGET) -> dict[str, dict]:
    """Train (or reuse from the cache) the adapters of the task's fine-tuning rows, and nothing else.

    This is the step `accelerate launch` / `torchrun` spreads over several processes
    (GPUs); `advisor run` afterwards finds the adapters in the cache and only evaluates.
    The main process converts the model and builds the shared artifacts (the retrieval
    index) first, so the others read them from the cache instead of writing the same
    files at the same time.
    """
    import torch
    from accelerate import PartialState

    task, _ = apply_budget(task, budget)  # the same adapters `advisor run --budget` will look for
    classes = [c for c in select_strategies(task, strategy_names) if c.family.trains]
    if not classes:
        raise RunError("none of the selected strategies fine-tunes; nothing to train")
    quiet_libraries()
    # Before any model loads: it pins each process to its own GPU ("cuda" is then that GPU); on a
    # machine without one, cpu=True lets several CPU processes talk over gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        loaded = load_generators(task.spec.models, [c.name for c in classes], endpoints=False)
        ctx = build_context(task, seed, classes, loaded, Path("."))
        strategies = [cls(ctx) for cls in classes]
        for s in strategies:
            s.prepare_shared()
    found = {}
    for s in strategies:
        s.prepare()
        found[s.name] = s.setup.details["training"]
    return found


# ------------------------------------------------------------ results


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


def _dtype(generator) -> dict:
    """A local model's weight dtype (an endpoint's is not ours to know)."""
    dtype = getattr(generator, "dtype", None)
    return {"dtype": str(dtype).removeprefix("torch.")} if dtype is not None else {}


def _models_used(task: Task, ctx: Context) -> dict:
    """The generators the run's strategies used (named as in `models`), and the embedder if any row used it."""
    named = {task.spec.models.for_strategy(s)[0]: g for s, g in ctx.generators.items()} or {"default": ctx.generator}
    out: dict[str, Any] = {("generator" if name == "default" else f"generator {name}"):
                           {"name": g.display_name, "fingerprint": g.fingerprint} | _dtype(g) for name, g in named.items()}
    embedder = ctx.embedder_if_loaded
    out["embedder"] = {"name": embedder.display_name, "fingerprint": embedder.fingerprint} if embedder else None
    return out


def assemble(task: Task, seed: int, evaluated: list[Evaluation], ctx: Context, started, seconds: float,
             command: str) -> dict:
    examples = []
    # Where each row's answer to eval item k is in its lists: a row evaluated sequentially answered only some
    # items, and the items it skipped get no answer here (never presented as measured).
    at = {e.name: {i: j for j, i in enumerate(e.items if e.items is not None else range(len(task.eval)))}
          for e in evaluated}
    for k, ex in enumerate(task.eval):
        answered = [(e, at[e.name][k]) for e in evaluated if k in at[e.name]]
        examples.append({
            "id": ex.id, "input": ex.input, "expected": list(ex.references), "tags": list(ex.tags), "source": ex.source,
            **({"cluster": ex.cluster} if ex.cluster else {}),
            "answers": {e.name: {"text": e.answers[j].text, "score": e.scores[j], "format_ok": e.formats[j],
                                 "sources": e.answers[j].sources, "prompt_tokens": e.answers[j].prompt_tokens,
                                 "completion_tokens": e.answers[j].completion_tokens,
                                 "scoring": e.details[j] if e.details else None} for e, j in answered},
            "method": describe_method(method_for(ex, task.spec.scoring)),
            "counted": all(e.counted[j] for e, j in answered if e.counted) if "judge" in method_names(
                method_for(ex, task.spec.scoring)) else None,
        })
    return {
        "advisor_version": __version__,
        "task": {"name": task.name, "description": task.description, "root": str(task.root.resolve()), "files": task.files,
                 "n_train": len(task.train), "n_eval": len(task.eval), "n_documents": len(task.documents),
                 # title / url / updated of the documents that carry them: the report cites sources by them
                 "document_meta": {d.id: m for d in task.documents
                                   if (m := {k: v for k in ("title", "url", "updated") if (v := getattr(d, k))})},
                 "split": task.split,
                 "tags": sorted({t for ex in task.eval for t in ex.tags}),
                 "instructions_tokens": ctx.generator.count_tokens(task.instructions)},
        "run": {"seed": seed, "started": started.isoformat(timespec="seconds"), "seconds": seconds, "command": command,
                "models": _models_used(task, ctx), "versions": _versions(), "hardware": _hardware(),
                # Endpoint requests sent again after 408/429/5xx or a dropped connection (history shows flaky APIs).
                "retries": sum(getattr(g, "retries", 0) for g in {id(g): g for g in ctx.generators.values()}.values())},
        "scoring": task.spec.scoring.model_dump(),
        "strategies": [e.summary for e in evaluated],
        # the rows that answered every item the run evaluated (restate_statistics redoes this from `examples`)
        "comparisons": compare_rows([e for e in evaluated if len(e.scores) == max(len(x.scores) for x in evaluated)],
                                    seed),
        "examples": examples,
        "experiments": {},
    }


def counted_examples(results: Measured) -> list[ExampleResult]:
    """The eval items whose scores count, the same for every row: not those only an uncalibrated judge scored
    (`examples[].counted`), unless people labelled every row's answer (advisor.labels.counts), and not those
    no row answered (a sequential run stopped before them)."""
    return [ex for ex in results.examples if ex.answers and counts(ex)]


def item_scores(results: Measured) -> dict[str, list[float]]:
    """Each row's score on every counted eval item, in eval order. Rows missing an item are left out: those a
    sequential run dropped (run.sequential), measured only on the items they answered before."""
    examples = counted_examples(results)
    names = [s.name for s in results.strategies]
    return {n: [ex.answers[n].score for ex in examples] for n in names
            if examples and all(n in ex.answers for ex in examples)}


def item_clusters(results: Measured) -> list[str] | None:
    """Each eval item's cluster (task.cluster_of), in eval order, aligned with item_scores; None when no two
    items share one (the statistics then treat items as independent) or the scores are not one per item."""
    labels = clusters_of(counted_examples(results))
    if labels is None or any(len(x) != len(labels) for x in item_scores(results).values()):
        return None
    return labels


def clusters_of(examples: list[ExampleResult]) -> list[str] | None:
    """These items' clusters (task.cluster_of), or None when no two share one."""
    labels = [cluster_of(ex.cluster, ex.source, ex.id) for ex in examples]
    return None if len(set(labels)) == len(labels) else labels


def estimate(x: list[float], seed: int, clusters: list[str] | None) -> Estimate:
    return Estimate(**mean_ci(x, seed, clusters).as_dict())


def restate_statistics(results: M) -> M:
    """Accuracy, per-tag and format intervals and the paired comparisons, from the per-item scores in
    `examples`: the run's own statistics, and a stored run's re-decided (`advisor roi`) with today's methods.
    Accuracy and the comparisons count the counted items only; format adherence is measured on every answer.
    Items that share a cluster get clustered intervals and tests (advisor.stats). A row a sequential run
    dropped is measured on the items it answered; the comparisons are between the rows that answered them all."""
    scores, seed = item_scores(results), results.run.seed
    if not scores:
        return results
    def of(clusters: list[str] | None, keep: list[bool]) -> list | None:  # the clusters of the items kept
        return None if clusters is None else [c for c, k in zip(clusters, keep) if k]

    counted, strategies = counted_examples(results), []
    for s in results.strategies:
        examples = [ex for ex in counted if s.name in ex.answers]
        x, clusters = [ex.answers[s.name].score for ex in examples], clusters_of(examples)
        if not x:
            strategies.append(s)
            continue
        tagged = {t: [t in ex.tags for ex in examples] for t in s.by_tag}
        restated = {"accuracy": estimate(x, seed, clusters),
                    "by_tag": {t: estimate([v for v, k in zip(x, keep) if k], seed, of(clusters, keep))
                               for t, keep in tagged.items()}}
        formats = [ex.answers[s.name].format_ok for ex in results.examples if s.name in ex.answers]
        if s.format_adherence is not None and None not in formats:
            restated["format_adherence"] = estimate([float(f) for f in formats], seed,
                                                    clusters if len(formats) == len(examples) else None)
        strategies.append(s.model_copy(update=restated))
    comparisons = tuple(Comparison(**c.as_dict()) for c in compare_all(scores, seed, clusters=item_clusters(results)))
    return results.model_copy(update={"strategies": tuple(strategies), "comparisons": comparisons})


def rows_from_results(results: Measured) -> list[Row]:
    scores = item_scores(results)
    rows = []
    for s in results.strategies:
        acc, fmt = s.accuracy, s.format_adherence
        costs = StrategyCosts(
            name=s.name, prompt_tokens=s.tokens.prompt_mean, completion_tokens=s.tokens.completion_mean,
            train_seconds=s.setup.train_seconds, index_seconds=s.setup.index_seconds,
            knowledge_in_weights=s.setup.knowledge_in_weights, accuracy=acc.mean, family=s.family,
            pricing=s.pricing.model_dump(),  # advisor.economics reads the prices as results.json states them
        )
        dropped = s.evaluated is not None and s.evaluated.status == "dropped"
        rows.append(Row(s.name, s.family, s.complexity, acc.mean, acc.low, acc.high, costs,
                        {t: e.mean for t, e in s.by_tag.items()}, fmt.mean if fmt else None,
                        tuple(scores.get(s.name, ())), (fmt.low, fmt.high) if fmt else None,
                        f"dropped by sequential evaluation: {s.evaluated.reason}" if dropped else None))
    return rows


def fresh_scores(results: Measured) -> dict[str, list[float]] | None:
    """Each row's per-item scores on the changed facts after the freshness experiment's update, if it ran."""
    found = results.experiments.freshness
    if found is None:
        return None
    return {name: list(r.scores) for name, r in found.strategies.items() if r.scores} or None


def analyze(results: Measured, spec: EconomicsSpec, labels: Sequence[ReviewLabel] | None = None) -> Results:
    """Statistics, economics and recommendation from measured results under the given assumptions; people's
    labels (`labels`, by default those results.review keeps; advisor review) replace their answers' automatic
    scores first. A stored Results is re-decided the same way (`advisor roi`); nothing is changed in place."""
    if labels is None:
        labels = results.review.labels if results.review is not None else ()
    results = apply_labels(results, labels, lambda unlabelled: analyze(unlabelled, spec).recommendation)
    results = restate_statistics(results)
    rows = rows_from_results(results)
    comparisons = {(c.a, c.b): c.model_dump() for c in results.comparisons}  # advisor.recommend reads them so
    seed, fresh = results.run.seed, fresh_scores(results)
    counted = counted_examples(results)
    item_tags = [tuple(ex.tags) for ex in counted]
    margin = results.decision.margin
    clusters, ids = item_clusters(results), [ex.id for ex in counted]
    verdict = decide(rows, comparisons, spec, fresh, seed, margin, clusters)
    rec = Recommendation.model_validate(explain(rows, comparisons, spec, verdict, results.task.n_train, item_tags,
                                                fresh, seed, margin, clusters, ids))
    econ = verdict.economics
    base = econ[rec.baseline]
    strategies = tuple(with_economics(s, StrategyEconomics(
        **econ[s.name].as_dict(),
        break_even_requests_per_day=break_even_requests_per_day(econ[s.name], base, spec.horizon_days)
        if s.name != base.name else None,
        payback_days=payback_days(econ[s.name], base, spec.requests_per_day, spec.horizon_days)
        if s.name != base.name else None)) for s in results.strategies)
    forgetting_found = results.experiments.forgetting
    probe = forgetting_found.adapters.get(rec.strategy) if forgetting_found is not None else None
    if probe is not None and probe.drop >= 0.1:
        rec = rec.model_copy(update={"cautions": (*rec.cautions, (
            f"its adapter loses {probe.drop:.0%} on a general-ability probe the base model answers "
            "(forgetting experiment): check that nothing outside the task matters to you."))})
    return concluded(results, strategies, Assumptions.model_validate(spec.model_dump()),
                     EconomicsSummary.model_validate({"baseline": base.name,
                                                      "sweep": volume_sweep(list(verdict.costs.values()), spec)}),
                     rec)


def write_outputs(results: Results, out_dir: Path) -> Results:
    """Write results.json, examples.csv and the reports."""
    from advisor.report import write_reports

    out_dir.mkdir(parents=True, exist_ok=True)
    write_results(results, out_dir)
    atomic_write_text(out_dir / "examples.csv", examples_csv(results))
    write_reports(results, out_dir)
    return results
