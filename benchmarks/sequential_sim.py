"""Is sequential evaluation safe, and what does it save? Rows with known accuracies, many seeds.

    .venv/bin/python benchmarks/sequential_sim.py [--seeds 2000] [--rule betting|naive|money] [--scenarios null2 ...]

Each simulated evaluation answers items in rounds, drops a row once the rule finds it worse than a
row still in, and stops when one row remains or the pool runs out: advisor/sequential.py's
`wealth` and `round_drops`, vectorized over seeds. Per scenario it prints

- wrong drop: the share of seeds where some row was dropped as worse than a row it is NOT worse than
  (a false rejection of the family; the rule promises <= alpha), with a 95% Clopper-Pearson upper bound;
- best out: the share of seeds where a truly best row was dropped (the verdict's error);
- power: the share of truly worse rows (worse than the best) that were dropped;
- items saved / cost saved: answers not given against evaluating every row on every item, in count
  and in per-answer cost (rows can cost different amounts per answer).

`--rule naive` replaces the betting test with a fixed-n one-sided paired z-test at the same alpha',
repeated after every round: the classic peeking mistake, shown to break the level.

`--rule money` simulates the stop a priced task adds (advisor.recommend.settled_in_money, the same
function the run calls): after each round, every row stops once the pick's expected loss is within the
tolerance (one accuracy point's worth of the stake) and stays so with `--robustness` item scores changed
against the pick (each value given is a row of the table; the run uses STOP_ROBUSTNESS). Its promise is
Bayesian, an expected loss, not an error rate; per scenario and robustness it prints the realised loss of
the pick at the stop (true net value of the best row minus the pick's, in units of the tolerance: the rule
aims at <= 1 on average), how often the pick loses more than the tolerance, the same two for deciding on
the whole pool, how often the stop picks what the whole pool picks, the share of seeds the rule stopped
before the pool ran out (with their mean loss), and the items saved.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advisor.recommend import STOP_ROBUSTNESS, settled_in_money  # noqa: E402
from advisor.sequential import ROUND_ITEMS, pair_alpha, round_drops, wealth  # noqa: E402
from advisor.stats import ALPHA  # noqa: E402
from advisor.task import EconomicsSpec  # noqa: E402
from advisor.value import decide_value, net_values, stake  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    name: str
    accuracies: tuple[float, ...]
    pool: int  # items
    rho: float = 0.5  # correlation of the rows' latent scores on one item (items easy or hard for all)
    cluster: int = 1  # items per cluster
    within: float = 0.0  # extra latent correlation of items in one cluster
    costs: tuple[float, ...] | None = None  # per answer; None: 1 for every row
    note: str = ""


SCENARIOS = [
    Scenario("null2", (0.6, 0.6), 200, note="two equal rows"),
    Scenario("null5", (0.5,) * 5, 80, note="five equal rows, 20 ordered pairs"),
    Scenario("null3-clustered", (0.6,) * 3, 90, cluster=3, within=0.5, note="equal rows, clusters of 3"),
    Scenario("tied-best", (0.4, 0.6, 0.6), 80, note="two equal best rows and a worse one"),
    Scenario("near2", (0.60, 0.65), 200, note="a 5-point gap"),
    Scenario("clear2-40", (0.3, 0.7), 40, note="a 40-point gap, 40 items"),
    Scenario("support-like-40", (0.02, 0.30, 0.05, 0.45), 40, costs=(1, 3, 1, 3),
             note="support's accuracies (few-shot, rag, lora, lora+rag); rag rows' prompts ~3x longer"),
    Scenario("support-like-90", (0.02, 0.30, 0.05, 0.45), 90, costs=(1, 3, 1, 3), note="the same, 90 items"),
    Scenario("five-200", (0.2, 0.4, 0.5, 0.6, 0.6), 200, costs=(1, 1, 1, 1, 100),
             note="five rows; the last (tied best) is a paid endpoint at 100x per answer"),
]


def simulate_scores(s: Scenario, n_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """Pass/fail scores (seeds, rows, items) with the rows' accuracies and correlated items: a shared latent
    per item (and per cluster) plus each row's own noise, thresholded at the row's accuracy quantile."""
    n_clusters = math.ceil(s.pool / s.cluster)
    cluster = np.repeat(rng.standard_normal((n_seeds, n_clusters)), s.cluster, axis=1)[:, : s.pool]
    item = math.sqrt(s.within) * cluster + math.sqrt(1 - s.within) * rng.standard_normal((n_seeds, s.pool))
    k = len(s.accuracies)
    latent = math.sqrt(s.rho) * item[:, None, :] + math.sqrt(1 - s.rho) * rng.standard_normal((n_seeds, k, s.pool))
    return (latent < stats.norm.ppf(np.array(s.accuracies))[None, :, None]).astype(float)


def cluster_means(scores: np.ndarray, size: int) -> np.ndarray:
    """(..., items) -> (..., clusters): the mean of each run of `size` items (the last may be shorter)."""
    n = scores.shape[-1]
    starts = np.arange(0, n, size)
    return np.add.reduceat(scores, starts, axis=-1) / np.diff(np.append(starts, n))


def evidence_paths(means: np.ndarray, rule: str, a_pair: float) -> np.ndarray:
    """(seeds, rows, rows, clusters): the evidence that row a is worse than row b after each cluster,
    on the betting scale (>= 1/a_pair rejects)."""
    d = means[:, None, :, :] - means[:, :, None, :]  # [s, a, b, t] = s_b - s_a
    n = d.shape[-1]
    if rule == "betting":
        return np.maximum.accumulate(wealth(d, a_pair, n), axis=-1)  # Ville: the supremum so far counts
    # naive: a one-sided paired z-test on the clusters so far, as if each look were the only one
    t = np.arange(1, n + 1)
    mean = np.cumsum(d, axis=-1) / t
    var = np.maximum(np.cumsum(d * d, axis=-1) / t - mean**2, 1e-12) * t / np.maximum(t - 1, 1)
    p = stats.norm.sf(mean / np.sqrt(var / t))
    return np.where((t > 1) & (p < a_pair), 1 / a_pair, 0.0)


def run_scenario(s: Scenario, n_seeds: int, rule: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    k = len(s.accuracies)
    acc = np.array(s.accuracies)
    costs = np.array(s.costs or (1.0,) * k)
    a_pair = pair_alpha(k, ALPHA)
    scores = simulate_scores(s, n_seeds, rng)
    means = cluster_means(scores, s.cluster)
    paths = evidence_paths(means, rule, a_pair)
    n_clusters = means.shape[-1]
    per_round = max(1, math.ceil(ROUND_ITEMS / s.cluster))
    ends = list(range(per_round, n_clusters, per_round)) + [n_clusters]
    sizes = np.full(n_clusters, s.cluster)  # items per cluster; the last may be short
    sizes[-1] = s.pool - s.cluster * (n_clusters - 1)
    alive = np.ones((n_seeds, k), dtype=bool)
    answered = np.zeros((n_seeds, k))
    wrong = np.zeros(n_seeds, dtype=bool)
    start = 0
    not_worse = acc[:, None] >= acc[None, :]  # [a, b]: a is not worse than b
    for end in ends:
        going = alive.sum(axis=1) > 1  # runs that have not stopped
        answered += np.where(alive & going[:, None], sizes[start:end].sum(), 0)
        ev = paths[..., end - 1]
        out = round_drops(alive, ev, a_pair) & going[:, None]
        # a wrong drop: dropped while the evidence against a row it is not worse than crossed the line
        crossed = (ev >= 1 / a_pair) & alive[:, None, :]
        wrong |= np.any(out[:, :, None] & crossed & not_worse[None], axis=(1, 2))
        alive &= ~out
        start = end
    best = acc == acc.max()
    worse = ~best
    full = s.pool * k
    return {
        "wrong_drop": float(wrong.mean()),
        "wrong_upper": float(stats.beta.ppf(0.975, wrong.sum() + 1, n_seeds - wrong.sum())) if wrong.sum() < n_seeds else 1.0,
        "best_out": float((~alive[:, best]).any(axis=1).mean()),
        "power": float((~alive[:, worse]).mean()) if worse.any() else None,
        "items_saved": float(1 - answered.sum(axis=1).mean() / full),
        "cost_saved": float(1 - (answered * costs).sum(axis=1).mean() / (s.pool * costs.sum())),
        "mean_items": float(answered.sum(axis=1).mean()),
        "full_items": full,
        "alpha": ALPHA,
        "wrong": int(wrong.sum()),
        "seeds": n_seeds,
    }


@dataclass(frozen=True)
class MoneyScenario:
    """Rows with known accuracies and known total costs over the horizon, under a task's prices."""

    name: str
    accuracies: tuple[float, ...]
    totals: tuple[float, ...]  # each row's total cost over the horizon ($)
    pool: int
    requests: float  # over the horizon
    value_per_correct: float
    cost_per_error: float = 0.0
    rho: float = 0.5
    cluster: int = 1
    within: float = 0.0
    note: str = ""

    def spec(self) -> EconomicsSpec:
        return EconomicsSpec(requests_per_day=self.requests / 365, horizon_days=365,
                             value_per_correct=self.value_per_correct, cost_per_error=self.cost_per_error)

    def as_rows(self) -> Scenario:
        return Scenario(self.name, self.accuracies, self.pool, self.rho, self.cluster, self.within)


MONEY_SCENARIOS = [
    MoneyScenario("support-like", (0.01, 0.17, 0.04, 0.34), (574, 1081, 10711, 1671), 100, 1_095_000, 3.60, 2.40,
                  note="support seed 0's accuracies and costs (few-shot, rag, lora, lora+rag), its prices"),
    MoneyScenario("support-like-clustered", (0.01, 0.17, 0.04, 0.34), (574, 1081, 10711, 1671), 100, 1_095_000,
                  3.60, 2.40, cluster=5, within=0.5, note="the same, items in clusters of 5"),
    MoneyScenario("quiz-cheap", (0.82, 0.85), (0.36, 548), 200, 4500, 0.01,
                  note="issue 32's quiz: lora 1,500x dearer for 3 points, a correct answer worth $0.01"),
    MoneyScenario("quiz-dear", (0.82, 0.85), (0.36, 548), 200, 4500, 100.0,
                  note="the same at $100 a correct answer: 3 points are worth $13,500"),
    MoneyScenario("near-2pt", (0.60, 0.62), (0, 0), 200, 100_000, 1.0,
                  note="equal costs, a 2-point gap: the wrong pick loses two tolerances"),
    MoneyScenario("tie", (0.60, 0.60), (0, 500), 200, 100_000, 1.0, note="equal accuracy, one row $500 dearer"),
    MoneyScenario("quick-facts-like", (0.61, 0.60, 0.71), (1.6, 2.8, 1001), 86, 36_500, 0.03, 0.30,
                  note="quick_facts seeds 0-1 (zero-shot, few-shot, lora) at its prices: lora's 10 points are worth "
                       "$1,205 against its $1,000"),
]


def run_money_scenario(s: MoneyScenario, n_seeds: int, seed: int = 0, robust: int = STOP_ROBUSTNESS) -> dict:
    """Sequential evaluation under the money stop (no drops: the betting test's part is measured above), the stop
    taken only when it survives `robust` item scores changed against the pick."""
    rng = np.random.default_rng(seed)
    spec, k = s.spec(), len(s.accuracies)
    names, complexity, totals = [f"r{i}" for i in range(k)], list(range(k)), list(s.totals)
    scores = simulate_scores(s.as_rows(), n_seeds, rng)  # seeds, rows, items
    labels = [str(i // s.cluster) for i in range(s.pool)] if s.cluster > 1 else None
    truth = net_values(np.array(s.accuracies), np.array(s.totals), spec)
    tolerance = spec.loss_tolerance * stake(spec)
    ends = list(range(ROUND_ITEMS, s.pool, ROUND_ITEMS)) + [s.pool]
    stopped_at = np.full(n_seeds, s.pool)
    pick = np.full(n_seeds, -1)
    by_rule = np.zeros(n_seeds, dtype=bool)  # stopped by the rule before the pool ran out
    for end in ends:  # rounds outer, seeds inner: the Bayesian bootstrap's weights are shared per item count
        for j in np.flatnonzero(pick < 0):
            x = [tuple(row[:end]) for row in scores[j]]
            cl = None if labels is None else labels[:end]
            stop = end < s.pool and settled_in_money(names, complexity, x, totals, spec, cl, robust=robust)
            if stop or end == s.pool:
                by_rule[j] = bool(stop)
                pick[j] = names.index(decide_value(names, complexity, x, totals, spec, cl, plan=False).pick)
                stopped_at[j] = end
    full = np.array([names.index(decide_value(names, complexity, [tuple(r) for r in scores[j]], totals, spec,
                                              labels, plan=False).pick) for j in range(n_seeds)])
    loss, loss_full = (truth.max() - truth[pick]) / tolerance, (truth.max() - truth[full]) / tolerance
    return {"loss": float(loss.mean()), "over": float((loss > 1).mean()), "loss_full": float(loss_full.mean()),
            "over_full": float((loss_full > 1).mean()), "items": float(stopped_at.mean()),
            "same": float((pick == full).mean()), "by_rule": float(by_rule.mean()),
            "loss_by_rule": float(loss[by_rule].mean()) if by_rule.any() else None,
            "saved": float(1 - stopped_at.mean() / s.pool), "seeds": n_seeds}


def money_table(n_seeds: int, robustness: list[int]) -> None:
    print(f"rule: money stop (advisor.recommend.settled_in_money); rounds of {ROUND_ITEMS} items, at least 30; "
          f"{n_seeds} seeds per scenario; loss in tolerances (one accuracy point's worth); robustness: the stop "
          f"holds with that many item scores changed against the pick (the run's: {STOP_ROBUSTNESS})")
    print("| scenario | accuracies | items | robustness | mean loss at the stop | loss > tolerance "
          "| mean loss, whole pool | loss > tolerance, whole pool | same pick as the whole pool "
          "| settled by the rule (mean loss then) | items answered per row | items saved |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in MONEY_SCENARIOS:
        for k in robustness:
            r = run_money_scenario(s, n_seeds, robust=k)
            print(f"| {s.name} | {', '.join(f'{a:.0%}' for a in s.accuracies)} | {s.pool} | {k} | {r['loss']:.2f} "
                  f"| {r['over']:.1%} | {r['loss_full']:.2f} | {r['over_full']:.1%} | {r['same']:.0%} "
                  f"| {r['by_rule']:.0%} ({'-' if r['loss_by_rule'] is None else format(r['loss_by_rule'], '.2f')}) "
                  f"| {r['items']:.0f} of {s.pool} | {r['saved']:.0%} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2000)
    ap.add_argument("--rule", choices=["betting", "naive", "money"], default="betting")
    ap.add_argument("--scenarios", nargs="+", default=[s.name for s in SCENARIOS])
    ap.add_argument("--robustness", type=int, nargs="+", default=[0, STOP_ROBUSTNESS],
                    help="--rule money: the stop's robustness values to compare")
    args = ap.parse_args(argv)
    if args.rule == "money":
        return money_table(min(args.seeds, 500), args.robustness)
    chosen = [s for s in SCENARIOS if s.name in args.scenarios]
    print(f"rule: {args.rule}; alpha {ALPHA} split over each scenario's ordered pairs (Bonferroni); "
          f"rounds of {ROUND_ITEMS} items; {args.seeds} seeds per scenario")
    print(f"| scenario | accuracies | items | wrong drop (95% upper) vs alpha {ALPHA} | best out | power "
          "| items answered (of all) | items saved | cost saved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in chosen:
        r = run_scenario(s, args.seeds, args.rule)
        flag = "" if r["wrong_upper"] <= ALPHA or r["wrong_drop"] <= ALPHA else " **over alpha**"
        power = "-" if r["power"] is None else f"{r['power']:.0%}"
        print(f"| {s.name} | {', '.join(f'{a:.0%}' for a in s.accuracies)} | {s.pool} "
              f"| {r['wrong_drop']:.2%} ({r['wrong_upper']:.2%}){flag} | {r['best_out']:.2%} | {power} "
              f"| {r['mean_items']:.0f} of {r['full_items']} | {r['items_saved']:.0%} | {r['cost_saved']:.0%} |")


if __name__ == "__main__":
    main()
