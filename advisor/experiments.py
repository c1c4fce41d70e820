"""The three experiments practitioners ask about before committing to fine-tuning.

- freshness: change facts in the documents after every strategy is prepared, answer
  again without retraining; who follows the update?
- forgetting: a small general-ability probe on the base model and through each
  adapter; how much does fine-tuning cost in general ability?
- data curve: fine-tune on growing subsets of train; how much data is enough?
"""
from __future__ import annotations

import functools
import random
from dataclasses import replace
from importlib import resources
from pathlib import Path

from advisor.scoring import Tools, score
from advisor.stats import mean_ci
from advisor.task import Document, ScoringSpec, Task, read_examples
from advisor.workload import asked_again_later
from strategies import Strategy

PROBE_FILE = "general.jsonl"
PROBE_MAX_NEW_TOKENS = 32


def merged_documents(original: list[Document], updated: list[Document]) -> list[Document]:
    """The collection after an update: same ids replaced, new ids added."""
    new = {d.id: d for d in updated}
    return [new.pop(d.id, d) for d in original] + list(new.values())


def freshness(task: Task, strategies: list[Strategy], seed: int, tools: Tools | None = None) -> dict:
    """Share of the changed facts each strategy gets right after the documents change."""
    docs = merged_documents(task.documents, task.updated_documents)
    sc = task.spec.scoring
    out = {"n": len(task.eval_updated), "changed_documents": sorted(d.id for d in task.updated_documents),
           "strategies": {}}
    for s in strategies:
        # Before the update these prompts are the row's own: answered in its eval call, read from the cache here.
        before = [score(a.text, ex, sc, tools) for a, ex in zip(s.answer(asked_again_later(task)), task.eval_updated)]
        s.refresh_documents(docs)  # re-index where the strategy can; nothing is retrained
        answers = s.answer([e.input for e in task.eval_updated])
        after = [score(a.text, ex, sc, tools) for a, ex in zip(answers, task.eval_updated)]
        out["strategies"][s.name] = {
            "before_update": mean_ci(before, seed).as_dict(),
            "after_update": mean_ci(after, seed).as_dict(),
            "answers": [a.text for a in answers],
            "scores": after,  # per changed fact: the verdict's paired freshness check uses them
        }
        s.refresh_documents(task.documents)  # leave the strategy as the main run saw it
    return out


@functools.cache
def load_probe() -> tuple:
    """The packaged probe, read once per process (the run sizes its progress bar by it, then runs it)."""
    path = Path(str(resources.files("advisor") / "probes" / PROBE_FILE))
    return tuple(read_examples(path, need_output=False))


def forgetting(task: Task, strategies: list[Strategy], seed: int) -> dict:
    """General-ability probe (items the default base model answers) with and without each adapter."""
    probe = load_probe()
    spec = ScoringSpec(method="contains")
    with_adapter = [s for s in strategies if s.adapter_path is not None]
    gen = (with_adapter or strategies)[0].generator  # adapters train on a local model (checked at task load)
    prompts = [gen.chat_ids([{"role": "user", "content": ex.input}]) for ex in probe]

    def accuracy(adapter: Path | None) -> dict:
        with gen.adapter(adapter):
            answers = gen.generate(prompts, PROBE_MAX_NEW_TOKENS, task.spec.generation.batch_size,
                                   batch_tokens=task.spec.generation.batch_tokens)
        return mean_ci([score(a.text, ex, spec) for a, ex in zip(answers, probe)], seed).as_dict()

    base = accuracy(None)
    out = {"n": len(probe), "base": base, "adapters": {}}
    seen: dict[Path, dict] = {}
    for s in strategies:
        if s.adapter_path is None:
            continue
        if s.adapter_path not in seen:
            seen[s.adapter_path] = accuracy(s.adapter_path)
        acc = seen[s.adapter_path]
        out["adapters"][s.name] = {"accuracy": acc, "drop": base["mean"] - acc["mean"]}
    return out


def data_curve(task: Task, strategy_cls: type[Strategy], ctx, sizes: list[int], tools: Tools | None = None) -> dict:
    """Fine-tune on the first n train examples (seeded order) for growing n; eval accuracy for each."""
    order = list(task.train)
    random.Random(ctx.seed).shuffle(order)
    sizes = sorted({min(n, len(order)) for n in sizes if n > 0} | {len(order)})
    points = []
    for n in sizes:
        sub = replace(task, train=order[:n])
        s = strategy_cls(ctx.with_task(sub))
        s.prepare()
        answers = s.answer([e.input for e in task.eval])
        scores = [score(a.text, ex, task.spec.scoring, tools) for a, ex in zip(answers, task.eval)]
        points.append({"examples": n, "accuracy": mean_ci(scores, ctx.seed).as_dict(),
                       "train_seconds": s.setup.train_seconds})
    return {"strategy": strategy_cls.name, "points": points}
