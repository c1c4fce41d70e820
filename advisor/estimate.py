"""`advisor run --dry-run`: what a run would take, from the task and the last measured run, or a probe.

With an earlier run of the same task in the history, no model is loaded: its measured
seconds per eval item (batched generation), tokens and cost per request, and set-up time
(training, indexing) are scaled by the number of requests this run would send: the eval
items, their paraphrases, the consistency samples and the single-request latency probes.

Before a first run, `first_estimate` counts each row's prompt and answer tokens with the
task's tokenizer and times a few seconds of batched generation on this machine (the probe);
time and cost follow from those and the prices, and the basis says so. A row whose
generator cannot be probed (an endpoint, a second local model) gets tokens and cost, no time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from advisor import history
from advisor.cache import hash_json
from advisor.economics import StrategyCosts, cost_per_request, pricing
from advisor.task import Task
from advisor.workload import requests_per_row

if TYPE_CHECKING:  # a type only: importing the strategies' base must not load torch
    from strategies.base import Strategy


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


PASSAGE_HEADER_TOKENS = 12  # "[1] (source: faq.md > Returns)" and the blank lines around a passage
PROBE_PROMPTS = 4  # a probe batch: enough to see batched speed, seconds on an idle CPU
TRAIN_COST = 3  # a training step costs about three forward passes (forward, then backward at twice that)


@dataclass(frozen=True)
class Probe:
    """Seconds of batched generation on this machine, split into reading the prompt and writing tokens."""

    prompt_seconds_per_token: float  # prefill, per prompt token, at this batch size
    seconds_per_new_token: float  # one decode step of the batch, per request in it
    batch: int
    seconds: float  # the probe's own wall time


def probe(generator, prompts: list[list[int]], new_tokens: int = 8) -> Probe:
    """Two generations of the same batch (1 new token, then `new_tokens`): the first is mostly reading the
    prompts, the difference is writing. Outside the generation cache, so nothing is kept."""
    t0 = time.perf_counter()
    generator.generate(prompts, 1, batch_size=len(prompts), use_cache=False)
    t1 = time.perf_counter()
    generator.generate(prompts, new_tokens, batch_size=len(prompts), use_cache=False)
    t2 = time.perf_counter()
    read = t1 - t0
    write = max(0.0, (t2 - t1) - read) / (new_tokens - 1)
    return Probe(read / sum(map(len, prompts)), write / len(prompts), len(prompts), t2 - t0)


def first_estimate(task: Task, strategies: list[type[Strategy]], history_file: Path) -> Estimate:
    """Tokens counted with the task's tokenizer and speed from a probe on this machine (loads the model)."""
    from advisor.models import Generator
    from strategies.base import fewshot_messages

    spec = task.spec
    gen = Generator(spec.models.generator, spec.models.dtype)
    items = task.eval or task.train
    sample = items[: min(len(items), spec.generation.batch_size, PROBE_PROMPTS)]
    k = min(spec.prompting.few_shot_k, len(task.train))
    shots = task.train[:k]  # the few-shot rows draw their own k; any k train examples are about as long

    def prompt_ids(cls, text: str) -> list[int]:
        return gen.chat_ids(fewshot_messages(task.instructions if cls.use_instructions else "",
                                             shots if cls.few_shot else [], text))

    p = probe(gen, [prompt_ids(strategies[0], ex.input) for ex in sample])
    answer = mean(min(spec.generation.max_new_tokens, gen.count_tokens(ex.references[0]) + 1)
                  for ex in items if ex.references) if any(ex.references for ex in items) else spec.generation.max_new_tokens
    train_tokens = sum(len(gen.chat_ids(fewshot_messages("", [], ex.input))) + gen.count_tokens(ex.output or "")
                       for ex in task.train) * spec.finetune.num_train_epochs
    n = requests_per_row(task)
    out = []
    for cls in strategies:
        passages = spec.rag.top_k * (spec.rag.chunk_tokens + PASSAGE_HEADER_TOKENS) if cls.family.retrieves else 0
        prompt = mean(len(prompt_ids(cls, ex.input)) for ex in items) + passages
        gen_name, gen_spec = spec.models.for_strategy(cls.name)
        local = gen_name == "default" and not gen_spec.is_endpoint
        seconds = (prompt * p.prompt_seconds_per_token + answer * p.seconds_per_new_token) * n if local else None
        setup = train_tokens * p.prompt_seconds_per_token * TRAIN_COST if local and cls.family.trains else 0.0
        costs = StrategyCosts(cls.name, prompt, answer, 0.0, 0.0, False, 0.0, cls.family,
                              pricing(gen_spec, n, seconds or 0.0) if (local or gen_spec.is_endpoint) else None)
        out.append(RowEstimate(cls.name, n, True, tokens=n * (prompt + answer),
                               seconds=None if seconds is None else seconds + setup,
                               setup_seconds=setup if seconds is not None else None,
                               cost_usd=n * cost_per_request(costs, spec.economics)))
    basis = (f"an estimate before any run of {task.name!r} (none in {history_file}): prompt and answer tokens counted "
             f"with {gen.display_name}'s tokenizer (answers: the references' length, at most max_new_tokens; "
             f"retrieval rows: top_k passages of at most chunk_tokens), speed from a {p.seconds:.1f} s probe of "
             f"{p.batch} prompts on this machine, LoRA training at {TRAIN_COST}x the prompt-reading time of "
             f"{spec.finetune.num_train_epochs:g} epochs; endpoints and other generators: tokens and cost only")
    return Estimate(task.name, basis, tuple(out))


def terminal(e: Estimate, console: Console) -> None:
    t = Table(title=f"advisor run --dry-run: {e.task} (nothing was run)", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("Strategy", "requests", "tokens", "time", "of which set-up", "cost $"):
        t.add_column(col, justify="left" if col == "Strategy" else "right")
    for r in e.rows:
        if not r.measured:
            t.add_row(Text(r.strategy), str(r.requests), "not measured", "–", "–", "–")
            continue
        t.add_row(Text(r.strategy), str(r.requests), f"{r.tokens:,.0f}",
                  "–" if r.seconds is None else f"{r.seconds:,.1f} s",
                  "–" if r.setup_seconds is None else f"{r.setup_seconds:,.1f} s",
                  "–" if r.cost_usd is None else f"{r.cost_usd:.6f}")
    console.print(t)
    measured = [r for r in e.rows if r.measured]
    if measured:
        console.print(Text(f"total: {sum(r.seconds or 0 for r in measured):,.1f} s, "
                           f"{sum(r.tokens for r in measured):,.0f} tokens, "
                           f"${sum(r.cost_usd or 0 for r in measured):.6f} (rows with numbers only)"))
    console.print(Text(f"basis: {e.basis}. Model loading and the experiments (freshness, forgetting, data curve) "
                       "are not included. Counted as if every row answered every item (--budget full): sequential "
                       "evaluation, the default, stops rows once they are out or the decision is settled, so for it "
                       "these are upper bounds.", style="dim"))


def summary_line(e: Estimate) -> str:
    """One line for the start of a run: the estimated time, or why there is none yet."""
    measured = [r for r in e.rows if r.measured]
    if not measured:
        return ("estimated time: none yet (no earlier run of this task to scale); "
                "each stage's bar shows its own remaining time")
    total = sum(r.seconds or 0 for r in measured)
    missing = [r.strategy for r in e.rows if not r.measured]
    return (f"estimated time: at most about {total / 60:,.1f} min for the rows (every row on every item)"
            + (f" ({', '.join(missing)} not measured yet)" if missing else "")
            + f", plus model loading and experiments; {e.basis}")
