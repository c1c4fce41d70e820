"""Answers -> scores: one strategy's eval answers, consistency probes, latency, and pairwise statistics.

`evaluate_strategy` is everything measured about one prepared row; `compare_rows`
tests every pair of rows on the same eval items, as one family (Holm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advisor.economics import pricing
from advisor.scoring import agree, passes_format, score
from advisor.stats import compare_all, mean_ci
from advisor.task import Task
from strategies import Answer, Strategy


@dataclass(frozen=True)
class Evaluation:
    """One row's measurements: `summary` is its entry in results.json; the per-item lists
    (in eval order) feed the pairwise tests and the examples table."""

    summary: dict
    answers: list[Answer]
    scores: list[float]
    formats: list[bool | None]

    @property
    def name(self) -> str:
        return self.summary["name"]


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def probe_items(n_eval: int, n_items: int) -> list[int]:
    """Items spread evenly over the eval set, so every kind of item (tag) is probed, not just the first rows."""
    n_items = min(n_items, n_eval)
    return sorted({round(k * n_eval / n_items) for k in range(n_items)}) if n_items else []


def self_agreement(strategy: Strategy, task: Task, answers: list[Answer], seed: int) -> tuple[dict | None, int]:
    """Would the row say the same again? (estimate, items probed)

    For each probed item, its greedy answer (what the row answers) and `samples - 1`
    answers sampled at the task's temperature; the share of pairs among them that
    agree. All samples go in one call, so the items' samples share batches.
    """
    cons, sc = task.spec.consistency, task.spec.scoring
    items = probe_items(len(task.eval), cons.items)
    if cons.samples < 2 or not items:
        return None, len(items)
    draws = range(1, cons.samples)  # sample 0 is the greedy answer
    sampled = strategy.answer([task.eval[i].input for _ in draws for i in items], temperature=cons.temperature,
                              sample_index=[s for s in draws for _ in items])
    per_item = []
    for j, i in enumerate(items):
        texts = [answers[i].text] + [sampled[d * len(items) + j].text for d in range(len(draws))]
        pairs = [(a, b) for k, a in enumerate(texts) for b in texts[k + 1:]]
        per_item.append(np.mean([agree(a, b, task.eval[i], sc) for a, b in pairs]))
    return mean_ci(per_item, seed).as_dict(), len(items)


def paraphrase_agreement(strategy: Strategy, task: Task, answers: list[Answer], seed: int) -> dict | None:
    """Robustness: paraphrased inputs answered alike (greedy)."""
    para = [(i, p) for i, ex in enumerate(task.eval) for p in ex.paraphrases]
    if not para:
        return None
    para_answers = strategy.answer([p for _, p in para])
    alike = [agree(answers[i].text, pa.text, task.eval[i], task.spec.scoring) for (i, _), pa in zip(para, para_answers)]
    return mean_ci([float(x) for x in alike], seed).as_dict()


def retrieval_quality(answers: list[Answer], task: Task) -> dict | None:
    """Whether the gold source document was among the retrieved passages (hit@k, MRR)."""
    with_source = [(a, ex) for a, ex in zip(answers, task.eval) if ex.source]
    if not with_source or not any(a.sources for a, _ in with_source):
        return None
    ranks = [a.sources.index(ex.source) + 1 if ex.source in a.sources else None for a, ex in with_source]
    return {"k": task.spec.rag.top_k, "n": len(ranks),
            "hit_at_k": float(np.mean([r is not None for r in ranks])),
            "mrr": float(np.mean([1 / r if r else 0.0 for r in ranks]))}


def requests_per_row(task: Task) -> int:
    """Generation requests one row sends: eval, paraphrases, consistency samples, latency probes."""
    spec = task.spec
    paraphrases = sum(len(ex.paraphrases) for ex in task.eval)
    items = len(probe_items(len(task.eval), spec.consistency.items)) if spec.consistency.samples >= 2 else 0
    sampled = (spec.consistency.samples - 1) * items  # the greedy eval answer is the first sample
    return len(task.eval) + paraphrases + sampled + min(spec.latency.requests, len(task.eval))


def evaluate_strategy(strategy: Strategy, task: Task, seed: int) -> Evaluation:
    """Answer the eval set (greedy), then the consistency probes; score everything."""
    spec, sc = task.spec, task.spec.scoring
    inputs = [ex.input for ex in task.eval]
    answers = strategy.answer(inputs)
    # Measured generation time, also when answers come from the cache (each keeps its measured share).
    gen_seconds = sum(a.seconds for a in answers)
    scores = [score(a.text, ex, sc) for a, ex in zip(answers, task.eval)]
    formats = [passes_format(a.text, sc) for a in answers]
    agreement, n_items = self_agreement(strategy, task, answers, seed)
    paraphrases = paraphrase_agreement(strategy, task, answers, seed)
    # Latency as a user sees it: single requests, no batching, no cache.
    latencies = [strategy.time_one(inputs[i]) for i in range(min(spec.latency.requests, len(inputs)))]

    tags = sorted({t for ex in task.eval for t in ex.tags})
    by_tag = {t: mean_ci([s for s, ex in zip(scores, task.eval) if t in ex.tags], seed).as_dict() for t in tags}
    completion = [a.completion_tokens for a in answers]
    generator_name, generator_spec = spec.models.for_strategy(strategy.name)
    summary = {
        "name": strategy.name,
        "description": strategy.description,
        "family": strategy.family,
        "complexity": strategy.complexity,
        "model": strategy.generator.display_name + (" + LoRA adapter" if strategy.adapter_path else ""),
        "generator": generator_name,
        "pricing": pricing(generator_spec, len(answers), gen_seconds),
        "accuracy": mean_ci(scores, seed).as_dict(),
        "by_tag": by_tag,
        "format_adherence": mean_ci([float(f) for f in formats], seed).as_dict() if sc.format else None,
        "consistency": {"self_agreement": agreement, "paraphrase_agreement": paraphrases,
                        "samples": spec.consistency.samples, "temperature": spec.consistency.temperature,
                        "items": n_items},
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
        "retrieval": retrieval_quality(answers, task),
        "dropped_examples": int(sum(a.dropped_examples for a in answers)),
    }
    return Evaluation(summary, answers, scores, formats)


def compare_rows(evaluations: list[Evaluation], seed: int) -> list[dict]:
    """Every pair of rows, tested on the same eval items (paired), Holm-corrected as one family."""
    return [c.as_dict() for c in compare_all({e.name: e.scores for e in evaluations}, seed)]
