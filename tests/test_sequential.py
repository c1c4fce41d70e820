"""Sequential evaluation's stopping rule (advisor/sequential.py) and its simulation (benchmarks/sequential_sim.py).

The level check is a real one: it runs the simulation in the null case (equal rows) and asserts the
rate of wrong drops is not significantly above alpha; the same check run on the naive rule (a fixed-n
test repeated after every round) must fail, which shows the check can catch an anti-conservative rule.
"""
from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from advisor.sequential import bets, drops_after_round, pair_alpha, round_drops, rounds, wealth
from advisor.stats import ALPHA

ROOT = Path(__file__).resolve().parents[1]


def load_sim():
    spec = importlib.util.spec_from_file_location("sequential_sim", ROOT / "benchmarks" / "sequential_sim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bets_are_predictable_and_bounded():
    d = np.array([1.0, -1.0, 0.5, 1.0, 0.0])
    lam = bets(d, 0.01, 10_000)  # a long horizon: small bets, below the cap
    assert np.all((lam >= 0) & (lam <= 0.5)) and bets(d, 0.01, 1).max() == 0.5
    changed = d.copy()
    changed[3] = -1.0  # the bet on item 3 is placed before item 3 is seen
    assert np.allclose(bets(changed, 0.01, 10_000)[:4], lam[:4])
    assert not np.allclose(bets(changed, 0.01, 10_000)[4], lam[4])


def test_wealth_grows_on_evidence_and_shrinks_against_it():
    assert wealth(np.ones(30), 0.01, 30)[-1] >= 100
    assert wealth(-np.ones(30), 0.01, 30)[-1] < 1
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        wealth(np.array([2.0]), 0.01, 1)


def test_rounds_keep_clusters_whole_and_follow_the_seed():
    clusters = ["a", "a", "a", "b", "c", "c", "d", "e", "f", "g", "h", "i"]
    got = rounds(clusters, seed=3, round_items=4)
    assert sorted(i for r in got for i in r) == list(range(len(clusters)))
    for r in got:
        for c in set(clusters[i] for i in r):
            assert all(clusters[i] != c for other in got if other is not r for i in other)
    assert got == rounds(clusters, seed=3, round_items=4)
    assert got != rounds(clusters, seed=4, round_items=4)
    capped = rounds(clusters, seed=3, round_items=4, max_items=5)
    assert sum(len(r) for r in capped) <= 5


def test_round_drops_needs_a_beater_still_alive():
    alpha = 0.01
    ev = np.ones((3, 3))
    ev[0, 2] = 1000.0  # row 0 is worse than row 2
    assert round_drops(np.array([True, True, True]), ev, alpha).tolist() == [True, False, False]
    assert round_drops(np.array([True, True, False]), ev, alpha).tolist() == [False, False, False]


def test_a_clearly_worse_row_is_dropped_with_its_reason():
    rng = np.random.default_rng(0)
    n = 40
    scores = {"bad": [0.0] * n, "good": list((rng.random(n) < 0.9).astype(float)),
              "also": list((rng.random(n) < 0.85).astype(float))}
    clusters = [f"item:{i}" for i in range(n)]
    got = drops_after_round(scores, clusters, list(scores), 3, n, round_no=4)
    assert [d.row for d in got] == ["bad"]
    assert got[0].worse_than in {"good", "also"} and got[0].evidence >= 1 / pair_alpha(3)
    assert "significantly worse than" in got[0].reason and "40 items" in got[0].reason
    assert drops_after_round({k: v[:5] for k, v in scores.items()}, clusters[:5], list(scores), 3, n, 1) == []


def exceeds_alpha(wrong: int, seeds: int) -> bool:
    """A one-sided binomial test at 0.001: is the wrong-drop rate significantly above ALPHA?"""
    return stats.binomtest(wrong, seeds, ALPHA, alternative="greater").pvalue < 0.001


@pytest.mark.parametrize("name", ["null2", "null3-clustered"])
def test_null_wrong_drop_rate_stays_within_alpha_and_the_naive_rule_does_not(name):
    sim = load_sim()
    scenario = next(s for s in sim.SCENARIOS if s.name == name)
    betting = sim.run_scenario(scenario, 600, "betting")
    assert not exceeds_alpha(betting["wrong"], betting["seeds"]), betting
    naive = sim.run_scenario(scenario, 600, "naive")
    assert exceeds_alpha(naive["wrong"], naive["seeds"]), naive  # the check catches a peeking rule


def test_a_clear_gap_saves_items():
    sim = load_sim()
    scenario = next(s for s in sim.SCENARIOS if s.name == "clear2-40")
    r = sim.run_scenario(scenario, 300, "betting")
    assert r["power"] > 0.5 and r["items_saved"] > 0.1 and r["wrong"] == 0


def drop_row_after(results: dict, name: str, kept: int) -> dict:
    """The shared run's results as if sequential evaluation had dropped `name` after its first `kept` items:
    its answers to the later items removed, its `evaluated` record set (what evaluate_sequentially writes)."""
    out = copy.deepcopy(results)
    for ex in out["examples"][kept:]:
        del ex["answers"][name]
    n = len(out["examples"])
    row = next(s for s in out["strategies"] if s["name"] == name)
    row["evaluated"] = {"items": kept, "of": n, "status": "dropped", "round": 1,
                        "reason": f"significantly worse than another row after {kept} items (test)"}
    for s in out["strategies"]:
        s.setdefault("evaluated", {"items": n, "of": n, "status": "in", "round": 1, "reason": "answered every item"})
    out["run"]["sequential"] = {"rule": "test", "round_items": kept, "rounds": 2, "items": n, "of": n,
                                "stopped": "the items ran out", "max_items": None, "max_cost": None, "spent": 0.0}
    return out


def check_partial_row(results: dict, out_dir: Path) -> None:
    from advisor.results import Results
    from advisor.run import analyze, item_scores, write_outputs
    from advisor.task import EconomicsSpec

    name = results["strategies"][0]["name"]
    partial = analyze(Results.model_validate(drop_row_after(results, name, 2)),
                      EconomicsSpec.model_validate(results["assumptions"]))
    assert partial.strategy(name).accuracy.n == 2  # over the items it answered, not the eval set
    assert name not in item_scores(partial)
    assert all(name not in (c.a, c.b) for c in partial.comparisons)
    assert name in partial.recommendation.ruled_out and partial.recommendation.strategy != name
    written = write_outputs(partial, out_dir)
    assert written.strategies[0].evaluated.status == "dropped"
    md = (out_dir / "report.md").read_text()
    assert f"{name}: answered 2 of {len(results['examples'])} items; dropped after round 1" in md
    assert "answered all" in md
    assert f"Accuracy over the eval items each row answered (of {len(results['examples'])};" in md  # not "over all"


def test_a_dropped_row_is_measured_on_its_items_and_ruled_out(finished_run, tmp_path):
    check_partial_row(finished_run.results, tmp_path / "out")


def quiz_spec(value: float):
    from advisor.task import EconomicsSpec

    return EconomicsSpec(requests_per_day=50, horizon_days=90, value_per_correct=value)


def test_the_money_stop_needs_thirty_items_prices_and_a_settled_decision():
    from advisor.recommend import settled_in_money

    rng = np.random.default_rng(0)
    cheap, dear = (rng.random(120) < 0.82).astype(float), (rng.random(120) < 0.85).astype(float)
    names, complexity, totals = ["few-shot", "lora"], [1, 3], [0.36, 548.0]

    def stop(n: int, value: float | None, a=cheap, b=dear):
        spec = quiz_spec(value) if value is not None else quiz_spec(1).model_copy(update={"value_per_correct": None})
        return settled_in_money(names, complexity, [tuple(a[:n]), tuple(b[:n])], totals, spec)

    # A correct answer worth $0.01: lora's $548 can never pay, the cheap row is settled once 30 items are in.
    assert stop(29, 0.01) is None
    why = stop(30, 0.01)
    assert why and why.label == "the decision in money is settled"
    assert why.reason.startswith("the decision in money is settled after 30 items: few-shot")
    assert why.reason.endswith("stays so with any 2 item scores changed against it")
    # At $100 a correct answer three points are worth $13,500: 30 items do not settle it.
    assert stop(30, 100.0) is None
    assert stop(120, None) is None  # unpriced: the margin rule decides, nothing stops on money
    zeros = np.zeros(120)
    assert stop(120, 0.01, zeros, zeros) is None  # no row right on any item: the verdict's own first check


def test_the_money_stop_waits_until_two_changed_scores_would_not_overturn_it():
    """Equal scores, lora $548 dearer, a correct answer worth $5 (two items of 40 are worth $1,125 over the
    horizon): the cheap row's expected loss is $0, but two items scored the other way make lora the pick."""
    from advisor.recommend import settled_in_money

    same = tuple([1.0, 0.0] * 20)
    args = (["few-shot", "lora"], [1, 3], [same, same], [0.36, 548.0], quiz_spec(5.0))
    assert settled_in_money(*args, robust=0).reason.startswith("the decision in money is settled after 40 items: few")
    assert settled_in_money(*args, robust=1) is None and settled_in_money(*args) is None
    # A wide lead survives two changes: settled, and the row never best in a resample is not a contender.
    far = settled_in_money(["few-shot", "lora"], [1, 3], [same, tuple([1.0] * 40)], [0.36, 548.0], quiz_spec(5.0))
    assert far and "lora is the best-value row" in far.reason and far.contenders == ("lora",)


@pytest.mark.parametrize("name", ["support-like-clustered", "near-2pt"])
def test_the_money_stop_keeps_the_realised_loss_within_the_tolerance_and_saves_items(name):
    sim = load_sim()
    scenario = next(s for s in sim.MONEY_SCENARIOS if s.name == name)
    r = sim.run_money_scenario(scenario, 120)
    # The rule's promise: the pick's expected loss at the stop is at most one tolerance.
    assert r["loss"] <= 1.0 and r["saved"] > 0.3, r


def test_the_run_costs_its_rows_for_the_money_stop(tiny_task_dir, generator, embedder, tmp_path):
    """run.money_stop, what the run hands sequential evaluation: real rows, costed from their answers' tokens."""
    from dataclasses import replace

    from advisor.run import money_stop
    from advisor.task import load_task
    from strategies import Answer, Context, registry

    plain = load_task(tiny_task_dir)
    assert money_stop(plain, 0) is None  # unpriced: only the betting test stops rows
    econ = plain.spec.economics.model_copy(update={"value_per_correct": 1.0, "requests_per_day": 1000})
    task = replace(plain, spec=plain.spec.model_copy(update={"economics": econ}))
    ctx = Context(task, 0, generator, lambda: embedder, tmp_path)
    rows = [registry()["zero-shot"](ctx), registry()["few-shot"](ctx)]
    answers = {"zero-shot": [Answer("a reply", 40, 20, 0.5)] * 40, "few-shot": [Answer("a reply", 400, 20, 0.5)] * 40}
    clusters = [f"c{i}" for i in range(40)]
    settled = money_stop(task, 0)
    # few-shot is right three times in four, zero-shot never: settled on few-shot however its longer prompt costs.
    scores = {"zero-shot": [0.0] * 40, "few-shot": [1.0, 1.0, 1.0, 0.0] * 10}
    why = settled(rows, scores, clusters, answers)
    assert why and why.reason.startswith("the decision in money is settled after 40 items: few-shot")
    assert why.contenders == ("few-shot",)  # zero-shot is best in no resample: it gets no probes
    assert settled(rows, {k: v[:20] for k, v in scores.items()}, clusters[:20], answers) is None  # < 30 items
    # Equal scores: the cheaper row wins only by its token cost, far below a point of accuracy's worth; two item
    # scores changed would hand it to few-shot, so the stop waits.
    even = {"zero-shot": scores["few-shot"], "few-shot": scores["few-shot"]}
    assert settled(rows, even, clusters, answers) is None


def test_probes_go_only_to_the_rows_the_stop_names(tiny_task_dir, generator, embedder, tmp_path):
    """evaluate_sequentially on real rows: a stop that names few-shot alone as a contender leaves zero-shot
    with its answers and scores but no repeated samples or latency, and says so in its reason."""
    from advisor.evaluate import Limits, evaluate_sequentially
    from advisor.scoring import Tools
    from advisor.sequential import Stop
    from advisor.task import load_task
    from strategies import Context, registry

    task = load_task(tiny_task_dir)
    ctx = Context(task, 0, generator, lambda: embedder, tmp_path)
    rows = [registry()["zero-shot"](ctx), registry()["few-shot"](ctx)]
    for row in rows:
        row.prepare()
    stop = Stop("a test stop", "a test stop: few-shot can still win", contenders=("few-shot",))
    evaluations, record = evaluate_sequentially(rows, task, 0, Tools(lambda: embedder),
                                                Limits(round_items=2, settled=lambda *_: stop))
    zero, few = (e.summary for e in evaluations)
    assert record["stopped"] == stop.reason and record["items"] < len(task.eval)
    assert zero["evaluated"]["items"] == few["evaluated"]["items"] == record["items"]
    assert zero["evaluated"]["status"] == few["evaluated"]["status"] == "in"
    assert few["evaluated"]["reason"] == "still in when the run stopped: a test stop"
    assert zero["evaluated"]["reason"].endswith("not probed: it could not overtake the pick on the items answered")
    assert zero["consistency"]["self_agreement"] is None and zero["latency"]["n"] == 0
    assert few["consistency"]["self_agreement"] is not None and few["latency"]["n"] == 1
