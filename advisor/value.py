"""The decision in money, when the task prices quality (`economics.value_per_correct` and/or `cost_per_error`).

A row's net value over the horizon is what economics.py computes:

    V = requests x (accuracy x value_per_correct - (1 - accuracy) x cost_per_error) - total cost

Costs are measured; only accuracy is uncertain. Its uncertainty is a paired Bayesian bootstrap
(Rubin 1981): Dirichlet(1, ..., 1) weights over the eval items, or over whole clusters when items
share one, the same weights for every row, so the rows' accuracies move together as the items do.
Each of DRAWS draws gives every row a net value; over the draws, each row's probability of being the
best-value one and its expected loss against the best (E[max_j V_j - V_i]).

The pick is the row with the highest expected net value (its net value at the measured accuracy, the
posterior mean; on an exact tie the simpler row). It is recommended when its expected loss is at most
`economics.loss_tolerance` (default 1%) of the money the accuracy range puts at stake (requests x
(value_per_correct + cost_per_error)): one accuracy point's worth over the horizon. Costs are known, so
every loss the uncertainty can cause is an accuracy gap times that amount; a tolerance of one point says
"the pick may cost, on average, less than one point of accuracy would", and a point is the finest step
the report states accuracy in.

The value of more eval items (EVSI) is a preposterior simulation: draw the "true" accuracies from the
posterior (a Dirichlet weighting of the items), draw m new paired items from that weighting (each
a copy of an observed item's score vector, as the Bayesian bootstrap's predictive does), pick again on
the pooled items, and average the true net value that re-pick gains over the current pick.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from advisor.stats import cluster_codes
from advisor.task import DEFAULT_LOSS_TOLERANCE, EconomicsSpec

DRAWS = 4000  # posterior draws: P(best) to about +-0.8 points (binomial s.e. at 50%)
EVSI_DRAWS = 2000  # preposterior draws per sample size
EVSI_ITEMS = (30, 60, 120)  # more eval items the value of information is stated for
LOSS_TOLERANCE = DEFAULT_LOSS_TOLERANCE  # economics.loss_tolerance's default: one accuracy point's worth
METHOD = "paired Bayesian bootstrap"


def priced(spec: EconomicsSpec) -> bool:
    """Does the task price quality? Either field set means yes; both unset means the margin rule decides."""
    return spec.value_per_correct is not None or spec.cost_per_error is not None


def requests(spec: EconomicsSpec) -> float:
    return spec.requests_per_day * spec.horizon_days


def stake(spec: EconomicsSpec) -> float:
    """Money the accuracy range moves over the horizon: from 0% to 100% right."""
    return requests(spec) * ((spec.value_per_correct or 0.0) + (spec.cost_per_error or 0.0))


@dataclass(frozen=True)
class Units:
    """The eval sample as the bootstrap's units: items, or clusters of items resampled whole."""

    sums: np.ndarray  # units x rows: each row's summed item scores in the unit
    sizes: np.ndarray  # items in each unit
    clustered: bool


def units(scores: list[tuple[float, ...]], clusters=None) -> Units:
    """scores: one tuple per row, in eval order; clusters: each item's cluster label or None."""
    x = np.asarray(scores, dtype=float).T  # items x rows
    codes = cluster_codes(clusters, len(x))
    if codes is None:
        return Units(x, np.ones(len(x)), False)
    k = int(codes.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, codes, x)
    return Units(sums, np.bincount(codes, minlength=k).astype(float), True)


@lru_cache(maxsize=8)
def _weights(n_units: int, draws: int, seed: int) -> np.ndarray:
    """Dirichlet(1, ..., 1) weights, cached: a sweep re-decides many times on the same items."""
    w = np.random.default_rng(seed).dirichlet(np.ones(n_units), size=draws)
    w.setflags(write=False)
    return w


def posterior_accuracy(u: Units, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """draws x rows accuracies: each draw weights the units; a clustered draw is a ratio (items weighted)."""
    w = _weights(len(u.sizes), draws, seed)
    return (w @ u.sums) / (w @ u.sizes)[:, None]


def net_values(accuracy: np.ndarray, totals: np.ndarray, spec: EconomicsSpec) -> np.ndarray:
    """economics.py's net value at these accuracies (any shape, rows last)."""
    v, c = spec.value_per_correct or 0.0, spec.cost_per_error or 0.0
    return requests(spec) * (accuracy * (v + c) - c) - totals


@dataclass(frozen=True)
class ValueDecision:
    """The money decision over the rows still eligible, with what the sample leaves uncertain."""

    rows: tuple[str, ...]
    expected_value: tuple[float, ...]  # net value over the horizon at the measured accuracy
    p_best: tuple[float, ...]  # share of draws in which the row has the highest net value
    expected_loss: tuple[float, ...]  # E[max_j V_j - V_i] over the draws
    pick: str
    tolerance: float  # the pick's expected loss may be at most this ($)
    loss_tolerance: float  # the same as a share of the stake (economics.loss_tolerance)
    enough: bool
    value_per_correct: float | None
    cost_per_error: float | None
    requests: float  # over the horizon
    draws: int
    clusters: int | None  # units resampled when items share clusters
    evsi: tuple[tuple[int, float], ...] = ()  # (more eval items, expected value of their information $)

    def of(self, name: str) -> tuple[float, float, float]:
        """(expected value, P(best), expected loss) of one row."""
        i = self.rows.index(name)
        return self.expected_value[i], self.p_best[i], self.expected_loss[i]

    @property
    def settled(self) -> bool:
        """More items would not change the decision: none of the sizes tried is worth the tolerance."""
        return all(gain < self.tolerance for _, gain in self.evsi) if self.evsi else self.enough

    def as_dict(self) -> dict:
        return {"method": METHOD, "draws": self.draws, "clusters": self.clusters,
                "value_per_correct": self.value_per_correct, "cost_per_error": self.cost_per_error,
                "requests": self.requests, "pick": self.pick, "tolerance": self.tolerance,
                "loss_tolerance": self.loss_tolerance, "enough": self.enough,
                "rows": {name: {"expected_value": ev, "p_best": p, "expected_loss": loss}
                         for name, ev, p, loss in zip(self.rows, self.expected_value, self.p_best,
                                                      self.expected_loss)},
                "evsi": [{"items": m, "value": gain} for m, gain in self.evsi]}


def _order(complexity: list[int]) -> np.ndarray:
    """Columns simplest first, so argmax's first maximum is the simpler row on an exact tie."""
    return np.argsort(np.asarray(complexity), kind="stable")


def decide_value(names: list[str], complexity: list[int], scores: list[tuple[float, ...]], totals: list[float],
                 spec: EconomicsSpec, clusters=None, seed: int = 0, plan: bool = True) -> ValueDecision:
    """Pick the row of highest expected net value; P(best), expected loss and (plan=True) the value of more items.
    scores: each row's per-item scores, all over the same eval items in the same order."""
    u = units(scores, clusters)
    t = np.asarray(totals, dtype=float)
    mean = u.sums.sum(0) / u.sizes.sum()
    expected = net_values(mean, t, spec)
    order = _order(complexity)
    pick = int(order[np.argmax(expected[order])])
    draws = net_values(posterior_accuracy(u, DRAWS, seed), t, spec)
    top = draws.max(axis=1, keepdims=True)
    p_best = np.bincount(order[np.argmax(draws[:, order], axis=1)], minlength=len(names)) / DRAWS
    loss = (top - draws).mean(axis=0)
    tolerance = spec.loss_tolerance * stake(spec)
    evsi = tuple((m, sample_information(u, t, spec, complexity, pick, m, seed)) for m in EVSI_ITEMS) if plan else ()
    return ValueDecision(tuple(names), tuple(map(float, expected)), tuple(map(float, p_best)),
                         tuple(map(float, loss)), names[pick], float(tolerance), spec.loss_tolerance,
                         bool(loss[pick] <= tolerance),
                         spec.value_per_correct, spec.cost_per_error, requests(spec), DRAWS,
                         len(u.sizes) if u.clustered else None, evsi)


def sample_information(u: Units, totals: np.ndarray, spec: EconomicsSpec, complexity: list[int], pick: int,
                       m_items: int, seed: int = 0, draws: int = EVSI_DRAWS) -> float:
    """Expected value of the information in m_items more paired eval items, by preposterior simulation.

    Each draw: "true" accuracies from a Dirichlet weighting of the units; m new units drawn from that
    weighting (clusters: as many clusters as hold m items on average); the re-pick on the pooled units
    (the posterior mean, i.e. the pooled accuracy); the gain is the re-pick's true net value minus the
    current pick's. The mean gain is >= 0 up to simulation noise, clipped at 0.
    """
    rng = np.random.default_rng([seed, m_items])
    w = rng.dirichlet(np.ones(len(u.sizes)), size=draws)
    truth = net_values((w @ u.sums) / (w @ u.sizes)[:, None], totals, spec)
    new = rng.multinomial(max(1, round(m_items / u.sizes.mean())), w)  # draws x units: copies of each unit
    pooled = (u.sums.sum(0) + new @ u.sums) / (u.sizes.sum() + new @ u.sizes)[:, None]
    order = _order(complexity)
    repick = order[np.argmax(net_values(pooled, totals, spec)[:, order], axis=1)]
    gain = truth[np.arange(draws), repick] - truth[:, pick]
    return float(max(0.0, gain.mean()))
