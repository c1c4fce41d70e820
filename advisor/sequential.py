"""Sequential evaluation: answer the eval items in rounds and drop a row as soon as it is out.

A row is out when it is significantly worse than another row still in, by a test that stays
valid however often we look and whenever we stop (optional stopping):

- for every ordered pair (a, b) of rows, a one-sided test by betting (Waudby-Smith & Ramdas 2023,
  "Estimating means of bounded random variables by betting", JRSS-B) of H0 "a is not worse than b",
  E[d] <= 0 with d = s_b - s_a in [-1, 1] the paired score difference. The wealth
  K_t = prod_i (1 + lambda_i d_i), with bets lambda_i in [0, 1/2] chosen from d_1..d_{i-1} only
  (predictable), is a nonnegative supermartingale under H0; by Ville's inequality
  P(sup_t K_t >= 1/alpha') <= alpha', so rejecting when K_t >= 1/alpha' at any look keeps the type-I
  error <= alpha' under any stopping rule;
- the bets are the paper's predictable plug-in for a known horizon (its `fixed_n` variant, as in the
  authors' `confseq` package): lambda_t = min(1/2, sqrt(2 log(1/alpha') / (n sigma2_{t-1}))), with
  sigma2 the running variance of d shrunk towards the prior variance 1 by one pseudo-observation, and
  n the number of clusters in the pool (known before the first answer, so still predictable);
- alpha' = ALPHA / (k (k - 1)) over the k (k - 1) ordered pairs of k rows (Bonferroni): the chance
  that any row is dropped as worse than a row it is not worse than stays <= ALPHA;
- items that share a cluster (task.cluster_of: same `cluster` or `source`) are not independent: the
  bets are on whole clusters, d = the cluster's mean paired difference, the clusters answered in a
  seeded random order (so a file sorted by topic or difficulty does not bias the sequence). What is
  assumed: clusters are independent draws from the population the eval set samples, and the
  hypothesis is about the cluster-weighted mean (each cluster weighs the same).

Plain functions over numpy arrays; `wealth` and `round_drops` take leading batch axes so that
benchmarks/sequential_sim.py runs thousands of simulated evaluations through the same code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from advisor.stats import ALPHA

MAX_BET = 0.5  # 1 + lambda d >= 1/2: one bad cluster halves the wealth at most
ROUND_ITEMS = 10  # items per round (whole clusters, so a round may hold a few more)


@dataclass(frozen=True)
class Stop:
    """Why the rows still in stop answering: `label` names the rule (each row's line), `reason` is the whole
    sentence (the run's line). `contenders`: the rows that could still overtake the pick, the only ones the
    paraphrase, repeated-sample and latency probes are spent on (None: every row still in)."""

    label: str
    reason: str = ""
    contenders: tuple[str, ...] | None = None

    @property
    def text(self) -> str:
        return self.reason or self.label


def pair_alpha(n_rows: int, alpha: float = ALPHA) -> float:
    """Each ordered pair's level: alpha split over the k (k - 1) ordered pairs (Bonferroni)."""
    return alpha / max(1, n_rows * (n_rows - 1))


def bets(d: np.ndarray, alpha: float, horizon: int) -> np.ndarray:
    """The predictable plug-in bet for every observation of d (last axis), each from the ones before it."""
    d = np.asarray(d, dtype=float)
    t = np.arange(1, d.shape[-1] + 1)
    mean = np.cumsum(d, axis=-1) / (t + 1)  # prior mean 0, one pseudo-observation
    var = (1.0 + np.cumsum((d - mean) ** 2, axis=-1)) / (t + 1)  # prior variance 1 (the widest on [-1, 1])
    before = np.concatenate([np.ones(d.shape[:-1] + (1,)), var[..., :-1]], axis=-1)
    return np.minimum(MAX_BET, np.sqrt(2 * math.log(1 / alpha) / (max(1, horizon) * before)))


def wealth(d: np.ndarray, alpha: float, horizon: int) -> np.ndarray:
    """K_t after each observation (last axis): the evidence that E[d] > 0; 1 is none, 1/alpha rejects."""
    d = np.asarray(d, dtype=float)
    if d.size and (d.min() < -1 or d.max() > 1):
        raise ValueError("paired differences must lie in [-1, 1] (scores in [0, 1])")
    return np.cumprod(1 + bets(d, alpha, horizon) * d, axis=-1)


def round_drops(alive: np.ndarray, evidence: np.ndarray, alpha: float) -> np.ndarray:
    """Rows out after this round: alive and beaten, i.e. evidence[a, b] (wealth of "a worse than b") reached
    1/alpha for some b alive at the start of the round. Leading axes are a batch. If every row alive would
    go (a cycle, which needs contradictory evidence), none goes this round."""
    alive = np.asarray(alive, dtype=bool)
    beaten = alive & np.any((evidence >= 1 / alpha) & alive[..., None, :], axis=-1)
    everyone = np.all(beaten == alive, axis=-1, keepdims=True)
    return beaten & ~everyone


def rounds(clusters: list[str], seed: int, round_items: int = ROUND_ITEMS, max_items: int | None = None) -> list[list[int]]:
    """Item indices in rounds: whole clusters in a seeded random order, about `round_items` items a round,
    stopping before a cluster that would pass `max_items` (None: every item)."""
    order: dict[str, list[int]] = {}
    for i, c in enumerate(clusters):
        order.setdefault(c, []).append(i)
    groups = list(order.values())
    perm = np.random.default_rng(seed).permutation(len(groups))
    out, current, taken = [], [], 0
    for g in perm:
        if max_items is not None and taken + len(groups[g]) > max_items:
            break
        current += groups[g]
        taken += len(groups[g])
        if len(current) >= round_items:
            out.append(current)
            current = []
    return out + ([current] if current else [])


def cluster_differences(a: list[float], b: list[float], clusters: list[str]) -> np.ndarray:
    """d per cluster, in order of first appearance: the cluster's mean of s_b - s_a over its items."""
    diffs: dict[str, list[float]] = {}
    for x, y, c in zip(a, b, clusters, strict=True):
        diffs.setdefault(c, []).append(y - x)
    return np.array([np.mean(v) for v in diffs.values()])


@dataclass(frozen=True)
class Drop:
    """Why a row stopped answering: significantly worse than `worse_than` after `items` items."""

    row: str
    worse_than: str
    round: int  # 1-based
    items: int
    clusters: int
    evidence: float  # the largest wealth K of "row worse than worse_than" so far, >= 1/alpha
    alpha: float  # the run's alpha, split over `pairs` ordered pairs
    pairs: int

    @property
    def reason(self) -> str:
        return (f"significantly worse than {self.worse_than} after {self.items} items ({self.clusters} clusters, "
                f"round {self.round}): anytime-valid betting test, evidence {self.evidence:.0f} >= "
                f"{self.pairs}/{self.alpha:g} (alpha {self.alpha:g} split over {self.pairs} ordered pairs)")

    def as_dict(self) -> dict:
        return {"worse_than": self.worse_than, "round": self.round, "items": self.items, "clusters": self.clusters,
                "evidence": self.evidence, "alpha": self.alpha, "pairs": self.pairs}


def drops_after_round(scores: dict[str, list[float]], clusters: list[str], alive: list[str], n_rows: int,
                      horizon: int, round_no: int, alpha: float = ALPHA) -> list[Drop]:
    """The rows in `alive` that are out after this round. `scores` holds each alive row's scores on the items
    answered so far (the same items, in answer order); `clusters` their clusters; `n_rows` the rows the run
    started with (the Bonferroni split is fixed in advance); `horizon` the clusters in the pool.

    The evidence is the largest wealth over every cluster answered, not only at round ends: Ville's
    inequality bounds the supremum, so a look after every cluster costs nothing."""
    a_pair, pairs = pair_alpha(n_rows, alpha), max(1, n_rows * (n_rows - 1))
    k = len(alive)
    evidence = np.ones((k, k))
    for i, a in enumerate(alive):
        for j, b in enumerate(alive):
            if i != j and clusters:
                evidence[i, j] = wealth(cluster_differences(scores[a], scores[b], clusters), a_pair, horizon).max()
    np.fill_diagonal(evidence, 0.0)
    out = round_drops(np.ones(k, dtype=bool), evidence, a_pair)
    return [Drop(a, alive[int(np.argmax(evidence[i]))], round_no, len(clusters), len(set(clusters)),
                 float(evidence[i].max()), alpha, pairs)
            for i, a in enumerate(alive) if out[i]]
