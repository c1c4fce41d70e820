"""Answers -> scores: one strategy's eval answers, consistency probes, latency, and pairwise statistics.

`evaluate_strategy` is everything measured about one prepared row; `compare_rows`
tests every pair of rows on the same eval items, as one family (Holm).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from advisor import progress
from advisor.economics import endpoint_spend, pricing
from advisor.scoring import Score, Tools, agree, passes_format, score_item
from advisor.scoring.grounding import context_recall, support
from advisor.sequential import ROUND_ITEMS, Stop, drops_after_round, rounds
from advisor.stats import ALPHA, compare_all, mean_ci
from advisor.task import Example, ScoringSpec, Task, cluster_of, method_names
from advisor.workload import asked_again_later, paraphrases, probe_items
from strategies import Answer, Strategy


@dataclass(frozen=True)
class Evaluation:
    """One row's measurements: `summary` is its entry in results.json; the per-item lists
    (in eval order) feed the pairwise tests and the examples table. `counted` marks the
    items whose score counts (not those an uncalibrated judge alone scored)."""

    summary: dict
    answers: list[Answer]
    scores: list[float]
    formats: list[bool | None]
    details: list[dict] = field(default_factory=list)  # per item: parts, fields, similarity, judge, grounding
    counted: list[bool] = field(default_factory=list)
    items: list[int] | None = None  # the eval items answered (indices, eval order); None: every item

    @property
    def name(self) -> str:
        return self.summary["name"]


def score_answers(texts: list[str], examples: list[Example], spec: ScoringSpec, tools: Tools | None) -> list[Score]:
    """Every answer scored with its item's method; the judge's verdicts are asked for in one batch first."""
    if tools is not None and tools.judge is not None:
        tools.judge.verdicts([(ex, t) for t, ex in zip(texts, examples) if "judge" in method_names(spec.method_for(ex.tags))])
    return [score_item(t, ex, spec, tools) for t, ex in zip(texts, examples)]


def field_accuracy(scored: list[Score], seed: int) -> dict | None:
    """json_fields: each field's share right over the items scored by it (a missing field is wrong)."""
    per_field: dict[str, list[float]] = {}
    for s in scored:
        for name, ok in s.details.get("fields", {}).items():
            per_field.setdefault(name, []).append(float(ok))
    return {name: mean_ci(v, seed).as_dict() for name, v in per_field.items()} or None


def grounding(answers: list[Answer], task: Task, scored: list[Score], tools: Tools | None,
              seed: int) -> tuple[dict | None, list[dict]]:
    """Context recall and faithfulness of a retrieval row (None for rows that retrieve nothing), and per item."""
    per_item: list[dict] = [{} for _ in answers]
    if not any(a.passages for a in answers) or tools is None or tools.similarity is None:
        return None, per_item
    sc = task.spec.scoring
    recall, faithful, unsupported = [], [], []
    for item, a, ex, s in zip(per_item, answers, task.eval, scored):
        r = context_recall(ex.source, a.sources)
        f, refused = support(a.text, a.passages, sc, tools.similarity)
        item.update({k: v for k, v in (("context_recall", r), ("faithfulness", f)) if v is not None})
        if refused:
            item["contradictions"] = refused
        if r is not None:
            recall.append(float(r))
        if f is not None:
            faithful.append(f)
        if s.value >= 1 and (r is False or f == 0):
            unsupported.append(ex.id)
    summary = {"context_recall": mean_ci(recall, seed).as_dict() if recall else None,
               "faithfulness": mean_ci(faithful, seed).as_dict() if faithful else None,
               "threshold": sc.faithfulness_threshold, "right_unsupported": unsupported}
    return summary, per_item


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def self_agreement(strategy: Strategy, task: Task, answers: list[Answer], seed: int,
                   tools: Tools | None = None) -> tuple[dict | None, int]:
    """Would the row say the same again? (estimate, items probed)

    For each probed item, its greedy answer (what the row answers) and `samples - 1`
    answers sampled at the task's temperature; the share of pairs among them that
    agree (on content: advisor.scoring.agree). All samples go in one call, so the
    items' samples share batches.
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
        per_item.append(np.mean([agree(a, b, task.eval[i], sc, tools) for a, b in pairs]))
    return mean_ci(per_item, seed).as_dict(), len(items)


def paraphrase_agreement(task: Task, answers: list[Answer], para_answers: list[Answer], seed: int,
                         tools: Tools | None = None) -> dict | None:
    """Robustness: paraphrased inputs (`paraphrases(task)`, answered greedily) answered alike."""
    para = paraphrases(task)
    if not para:
        return None
    alike = [agree(answers[i].text, pa.text, task.eval[i], task.spec.scoring, tools)
             for (i, _), pa in zip(para, para_answers, strict=True)]
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


def evaluate_strategy(strategy: Strategy, task: Task, seed: int, tools: Tools | None = None,
                      answers: list[Answer] | None = None, probes: bool = True,
                      scored: list[Score] | None = None) -> Evaluation:
    """Answer the eval set (greedy), then the consistency probes; score everything.

    `tools` gives the scorers the task's embedder and judge; without it, the row's own embedder is used.
    Sequential evaluation passes the eval `answers` it already has (task.eval is then the items this row
    answered), and `probes=False` for a row that dropped out: no paraphrases, repeated samples or latency."""
    spec, sc = task.spec, task.spec.scoring
    tools = tools or Tools(lambda: strategy.ctx.embedder)
    inputs = [ex.input for ex in task.eval]
    para = [p for _, p in paraphrases(task)] if probes else []
    again = asked_again_later(task) if probes else []
    if answers is None:
        # The paraphrases and the questions asked again later are answered greedily in the same call: they fill
        # the eval set's batches.
        greedy = strategy.answer(inputs + para + again)
        answers, para_answers = greedy[: len(inputs)], greedy[len(inputs): len(inputs) + len(para)]
    else:  # in their own call, so the answers already scored are never regenerated in other batches
        para_answers = strategy.answer(para + again)[: len(para)] if para or again else []
    # Measured generation time, also when answers come from the cache (each keeps its measured share).
    gen_seconds = sum(a.seconds for a in answers)
    if scored is None:  # sequential evaluation passes the scores it computed for the stopping rule
        scored = score_answers([a.text for a in answers], task.eval, sc, tools)
    scores = [s.value for s in scored]
    counted = [s.counts for s in scored]
    formats = [passes_format(a.text, sc) for a in answers]
    agreement, n_items = self_agreement(strategy, task, answers, seed, tools) if probes else (None, 0)
    paraphrased = paraphrase_agreement(task, answers, para_answers, seed, tools) if probes else None
    grounded, grounded_items = grounding(answers, task, scored, tools, seed)
    details = [{"parts": s.parts, **s.details, **g} for s, g in zip(scored, grounded_items)]
    for d, s, g in zip(details, scored, grounded_items):  # the scorer's refusals and grounding's, both kept
        if "contradictions" in s.details and "contradictions" in g:
            d["contradictions"] = s.details["contradictions"] + g["contradictions"]
    # Latency as a user sees it: single requests, no batching, no cache.
    latencies = [strategy.time_one(inputs[i]) for i in range(min(spec.latency.requests if probes else 0, len(inputs)))]

    tags = sorted({t for ex in task.eval for t in ex.tags})
    by_tag = {t: mean_ci([s for s, ex, c in zip(scores, task.eval, counted) if t in ex.tags and c], seed).as_dict()
              for t in tags}
    judged = [s.parts["judge"] for s in scored if "judge" in s.parts]
    judge = None if not judged else {"accuracy": mean_ci(judged, seed).as_dict(),
                                     "counts": bool(tools.judge and tools.judge.counts)}
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
        "accuracy": mean_ci([x for x, c in zip(scores, counted) if c], seed).as_dict(),
        "by_tag": by_tag,
        "fields": field_accuracy(scored, seed),
        "judge": judge,
        "format_adherence": mean_ci([float(f) for f in formats], seed).as_dict() if sc.format else None,
        "consistency": {"self_agreement": agreement, "paraphrase_agreement": paraphrased,
                        "samples": spec.consistency.samples, "temperature": spec.consistency.temperature,
                        "items": n_items},
        "tokens": {"prompt_mean": float(np.mean([a.prompt_tokens for a in answers])),
                   "completion_mean": float(np.mean(completion)),
                   "prompt_max": int(max(a.prompt_tokens for a in answers))},
        "latency": {"p50_seconds": _percentile(latencies, 50), "p95_seconds": _percentile(latencies, 95),
                    "n": len(latencies)},
        "throughput": {"generation_seconds": gen_seconds, "batch_size": spec.generation.batch_size,
                       "batch_tokens": spec.generation.batch_tokens,
                       "requests_per_second": len(answers) / gen_seconds if gen_seconds else None,
                       "completion_tokens_per_second": sum(completion) / gen_seconds if gen_seconds else None},
        "setup": {"train_seconds": strategy.setup.train_seconds, "index_seconds": strategy.setup.index_seconds,
                  "knowledge_in_weights": strategy.setup.knowledge_in_weights, **strategy.setup.details},
        "retrieval": retrieval_quality(answers, task),
        "grounding": grounded,
        "dropped_examples": int(sum(a.dropped_examples for a in answers)),
    }
    return Evaluation(summary, answers, scores, formats, details, counted)


def compare_rows(evaluations: list[Evaluation], seed: int) -> list[dict]:
    """Every pair of rows, tested on the same eval items (those whose scores count), Holm-corrected as one family."""
    def kept(e: Evaluation) -> list[float]:
        return [x for x, c in zip(e.scores, e.counted or [True] * len(e.scores)) if c]

    return [c.as_dict() for c in compare_all({e.name: kept(e) for e in evaluations}, seed)]


# ---------------------------------------------------------------- sequential evaluation


# (rows still in, their scores on the items answered so far, those items' clusters, their answers to them)
# -> why the decision needs no more items (and which rows it still needs probed), or None to go on. The run builds
# it (advisor.run.money_stop): the decision in money lives above this module.
Settled = Callable[[list[Strategy], dict[str, list[float]], list[str], dict[str, list[Answer]]], "Stop | None"]


@dataclass(frozen=True)
class Limits:
    """When sequential evaluation stops answering: rows dropped as soon as they are out (`drop`; off under
    --budget full), every row stopped once `settled` says the decision needs no more items (with `drop`), at
    most `max_items` eval items, at most about `max_cost` dollars on priced endpoints."""

    drop: bool = True
    max_items: int | None = None
    max_cost: float | None = None
    round_items: int = ROUND_ITEMS
    settled: Settled | None = None
    min_items: int = 0  # the last row left keeps answering up to this many items (the verdict's own minimum)


def evaluate_sequentially(strategies: list[Strategy], task: Task, seed: int, tools: Tools | None,
                          limits: Limits) -> tuple[list[Evaluation], dict]:
    """Answer the eval items in rounds (advisor.sequential: whole clusters in a seeded order), drop a row
    after a round when the anytime-valid test finds it worse than a row still in, and stop when one row is
    left, the items run out, a cap is reached, or `settled` says the decision needs no more items. Then each
    row is evaluated on the items it answered; paraphrases, repeated samples and latency only for the rows
    still in that could overtake the pick (the stop's contenders; every row still in when no stop names
    them). Returns the evaluations (each summary's `evaluated` says how far the row got and why it stopped)
    and the run's record of the rounds."""
    spec, n = task.spec, len(task.eval)
    clusters = [cluster_of(ex.cluster, ex.source, ex.id) for ex in task.eval]
    plan = rounds(clusters, seed, limits.round_items, limits.max_items)
    horizon = len({clusters[i] for r in plan for i in r})
    names = [s.name for s in strategies]
    alive = list(names)
    answers: dict[str, dict[int, Answer]] = {name: {} for name in names}
    scored: dict[str, dict[int, Score]] = {name: {} for name in names}
    stopped: dict[str, dict] = {}
    order: list[int] = []  # items answered so far, in answer order
    spent, ran, stop = 0.0, 0, Stop("the items ran out")
    for k, items in enumerate(plan, 1):
        # One row left after the others dropped, once the verdict's minimum of items is in (else the winner could
        # not be recommended); a run of one row alone answers every item (nothing to compare).
        if limits.drop and len(names) > 1 and len(alive) < 2 and len(order) >= limits.min_items:
            stop = Stop(f"one row left after round {ran}")
            break
        if limits.max_cost is not None and order and spent + spent / len(order) * len(items) > limits.max_cost:
            stop = Stop(f"--max-cost ${limits.max_cost:g}", f"--max-cost ${limits.max_cost:g} (${spent:.4f} spent; "
                        "the next round would pass it)")
            break
        with progress.bar(f"round {k} of {len(plan)}: {len(alive)} rows answer {len(items)} items",
                          len(alive) * len(items)):
            for s in strategies:
                if s.name not in alive:
                    continue
                got = s.answer([task.eval[i].input for i in items])
                marks = score_answers([a.text for a in got], [task.eval[i] for i in items], spec.scoring, tools)
                answers[s.name].update(zip(items, got))
                scored[s.name].update(zip(items, marks))
                spent += endpoint_spend(spec.models.for_strategy(s.name)[1], sum(a.prompt_tokens for a in got),
                                        sum(a.completion_tokens for a in got))
        order += items
        ran = k
        if limits.drop and len(alive) > 1:
            kept = [i for i in order if all(scored[a][i].counts for a in alive)]
            for d in drops_after_round({a: [scored[a][i].value for i in kept] for a in alive},
                                       [clusters[i] for i in kept], alive, len(names), horizon, k):
                alive.remove(d.row)
                stopped[d.row] = {"status": "dropped", "round": k, "reason": d.reason, "drop": d.as_dict()}
        if limits.drop and limits.settled is not None and len(alive) > 1 and len(order) < n:
            # In eval order, as the verdict will see them: the paired bootstrap weighs items by position, so the
            # same items in another order draw other resamples, and a decision near its tolerance could differ.
            kept = sorted(i for i in order if all(scored[a][i].counts for a in alive))
            why = limits.settled([s for s in strategies if s.name in alive],
                                 {a: [scored[a][i].value for i in kept] for a in alive}, [clusters[i] for i in kept],
                                 {a: [answers[a][i] for i in order] for a in alive})
            if why:
                stop = why
                break
    if len(order) < n and limits.max_items is not None and stop.label == "the items ran out":
        stop = Stop(f"--max-items {limits.max_items}")
    capped = stop.label.startswith("--")
    probed = [a for a in alive if stop.contenders is None or a in stop.contenders]
    for name in alive:
        why = (f"stopped by {stop.text}" if capped else "answered every item" if len(order) == n
               else f"still in when the run stopped: {stop.label}")  # the run's line gives the rest
        if name not in probed:
            why += "; not probed: it could not overtake the pick on the items answered"
        stopped[name] = {"status": "capped" if capped else "in", "round": ran, "reason": why}
    evaluations = []
    for s in strategies:
        idx = sorted(answers[s.name])
        sub = replace(task, eval=[task.eval[i] for i in idx])
        e = evaluate_strategy(s, sub, seed, tools, answers=[answers[s.name][i] for i in idx], probes=s.name in probed,
                              scored=[scored[s.name][i] for i in idx])
        e.summary["evaluated"] = {"items": len(idx), "of": n, **stopped[s.name]}
        evaluations.append(replace(e, items=idx))
    rule = (f"anytime-valid betting test per ordered pair of rows on cluster mean differences, alpha {ALPHA:g} split "
            f"over the {len(names) * (len(names) - 1)} ordered pairs (advisor/sequential.py)"
            + ("; every row stops once the decision in money is settled (advisor/run.py money_stop)"
               if limits.settled is not None else "")) if limits.drop else "none (--budget full): no row is dropped"
    record = {"rule": rule,
              "round_items": limits.round_items, "rounds": ran, "items": len(order), "of": n, "stopped": stop.text,
              "max_items": limits.max_items, "max_cost": limits.max_cost, "spent": spent}
    return evaluations, record
