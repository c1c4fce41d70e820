"""The recommendation: a deterministic function of measured results and the user's situation.

Rule, following the field's guidance while the numbers decide within it:
1. Changing knowledge: on a task whose knowledge changes, a row the freshness experiment
   shows not following a document change pays a retrain for every change if it can be
   retrained, and is ruled out if it cannot.
2. Quality first: keep every strategy not significantly worse than the most accurate one
   (paired test on the same eval items, Holm-corrected over all the pairs). A difference
   that is not significant is never called better.
3. Among those, the lowest total cost over the horizon wins; a simpler strategy within
   COST_TIE of the cheapest is preferred (start simple).
4. Enough evidence: below MIN_EVAL_ITEMS eval items, when no row gets anything right, or
   when the pick is not shown non-inferior, within the task's margin (`decision.margin`), to
   every other contender (the upper end of the 95% interval of contender minus pick below the
   margin), whether or not the pick is the nominal leader, the verdict is "not enough
   evidence", with the number of eval items at which that check would pass.
When the task prices quality (economics.value_per_correct and/or cost_per_error), rules 2-4 give way to the
decision in money (advisor.value): the highest expected net value over the horizon, recommended when its
expected loss under the sample's uncertainty is at most one accuracy point's worth.
Reasons cite the numbers with their intervals and the sample they rest on; sensitivity
re-runs the same rule under other volumes and change frequencies to say what would flip it,
and fragility finds the fewest item scores that, changed, would change the verdict.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from advisor.economics import Economics, StrategyCosts, break_even_requests_per_day, economics, payback_days
from advisor.formatting import count, money, pct, points_worth
from advisor.kinds import Family
from advisor.sequential import Stop
from advisor.stats import (ALPHA, CONFIDENCE, POWER, cluster_codes, compare_all, detectable_difference,
                           difference_interval, discordance, holm, is_binary, items_needed, mean_ci,
                           min_discordant, noninferiority_items, normal_detectable_difference, normal_items_needed,
                           paired_compare, paired_test_name)
from advisor.task import DEFAULT_MARGIN, EconomicsSpec
from advisor.value import EVSI_ITEMS, METHOD, ValueDecision, decide_value, priced

COST_TIE = 0.10  # a simpler strategy within 10% of the cheapest total cost counts as tied
MIN_EVAL_ITEMS = 30  # fewer eval items than this: one item moves accuracy by more than 3 points
FRAGILITY_SEARCH = 15  # the fragility search tries at most this many changed item scores
# The money stop waits until this many item scores changed against the pick would leave the decision as it is.
# Why 2: people reviewing the support runs changed 3-4 automatic item scores a run, all against the pick (README,
# "Reviewing the deciding items"); a stop one or two scorer errors could overturn stops on the scorer's noise.
STOP_ROBUSTNESS = 2
MIN_TAG_ITEMS = 10  # a per-tag claim needs at least this many items of the tag
TAG_GAP = 0.2  # a tag where another row is this much better (and significantly so) is a caution
RECOMMENDED = "recommended"
NOT_ENOUGH = "not enough evidence"


@dataclass
class Row:
    name: str
    family: Family
    complexity: int
    accuracy: float
    low: float
    high: float
    costs: StrategyCosts
    by_tag: dict[str, float] = field(default_factory=dict)
    format_rate: float | None = None
    scores: tuple[float, ...] = ()  # per eval item, in eval order (the paired tests and per-tag claims use them)
    format_interval: tuple[float, float] | None = None  # 95% interval of format_rate
    stopped: str | None = None  # why sequential evaluation dropped the row (it is ruled out, its scores partial)

    def __post_init__(self):
        self.family = Family(self.family)  # also when read back from results.json as a plain string


@dataclass(frozen=True)
class Evidence:
    """What the sample can tell: its size, the test family, and the power behind the verdict."""

    n_items: int
    min_items: int
    tests: int  # pairwise tests in the family (Holm-corrected)
    alpha: float
    power: float
    pair: tuple[str, str] | None  # the two rows the verdict turns on
    gap: float | None  # their observed accuracy difference
    disagreement: float | None  # share of items on which they differ
    detectable_difference: float | None  # smallest gap this sample detects with `power` (None: none)
    items_needed: int | None  # eval items for the rule's checks to pass (None: more than 100,000, or nothing to tell)
    enough: bool
    why: str  # when not enough: the cause, in words
    margin: float = DEFAULT_MARGIN  # the non-inferiority margin the pick is checked against
    test: str = "McNemar exact"  # the paired test behind the comparisons and the power statement
    checks: tuple[NonInferiority, ...] = ()  # the pick against every other contender
    clusters: int | None = None  # clusters the items fall into, when some share one (else independent items)

    def as_dict(self) -> dict:
        return {"n_items": self.n_items, "min_items": self.min_items, "tests": self.tests, "alpha": self.alpha,
                "power": self.power, "pair": list(self.pair) if self.pair else None, "gap": self.gap,
                "disagreement": self.disagreement, "detectable_difference": self.detectable_difference,
                "items_needed": self.items_needed, "enough": self.enough, "why": self.why, "margin": self.margin,
                "test": self.test, "checks": [c.__dict__.copy() for c in self.checks], "clusters": self.clusters}


@dataclass(frozen=True)
class NonInferiority:
    """The pick against one other contender: is the contender surely less than `margin` ahead?"""

    row: str  # the contender
    gap: float  # its accuracy minus the pick's
    bound: float  # upper end of the 95% interval of that gap
    passes: bool  # bound < margin
    items_needed: int | None  # eval items at which this check passes with the stated power (None: it cannot)


@dataclass(frozen=True)
class FreshCheck:
    """One row against the freshness experiment: its share of the changed facts after the update."""

    name: str
    after: tuple[float, float, float, int]  # mean, low, high, n
    leader: str  # the row that follows the update best
    leader_after: float
    p_value: float
    fails: bool  # significantly worse than the leader on the changed facts, after Holm over the rows
    p_adjusted: float = 1.0  # Holm-corrected over the rows tested against the leader


@dataclass
class Verdict:
    strategy: str  # the pick; when status is NOT_ENOUGH, the most accurate row (not a recommendation)
    status: str
    contenders: list[str]
    baseline: str
    economics: dict[str, Economics]
    evidence: Evidence
    ruled_out: dict[str, str] = field(default_factory=dict)  # row -> why
    fresh: dict[str, FreshCheck] = field(default_factory=dict)
    costs: dict[str, StrategyCosts] = field(default_factory=dict)  # as priced: with retrains the freshness check adds
    value: ValueDecision | None = None  # the decision in money, when the task prices quality

    @property
    def label(self) -> str:
        return self.strategy if self.status == RECOMMENDED else NOT_ENOUGH


def _comparison(a: str, b: str, comparisons: dict) -> dict | None:
    return comparisons.get((a, b)) or comparisons.get((b, a))


def _significantly_worse(a: str, b: str, comparisons: dict[tuple[str, str], dict]) -> bool:
    """Is a significantly worse than b (after the family's correction)? The direction is the mean difference's."""
    c = _comparison(a, b, comparisons)
    return bool(c and c["significant"] and c.get("better", _better(c)) == b)


def _better(c: dict) -> str | None:
    """The row with the higher mean (comparisons from files written before `better` was stored)."""
    return None if c["diff"] == 0 else (c["a"] if c["diff"] > 0 else c["b"])


def _gap_interval(best: str, other: str, comparisons: dict) -> tuple[float, float] | None:
    """95% interval of accuracy(best) - accuracy(other), from the stored paired comparison."""
    if (best, other) in comparisons:
        c = comparisons[(best, other)]
        return c["low"], c["high"]
    if (other, best) in comparisons:
        c = comparisons[(other, best)]
        return -c["high"], -c["low"]
    return None


def baseline_of(rows: list[Row]) -> Row:
    """The prompting baseline: the most accurate prompting row (simplest on a tie)."""
    prompting = [r for r in rows if r.family == Family.PROMPTING] or rows
    return max(prompting, key=lambda r: (r.accuracy, -r.complexity))


def freshness_checks(rows: list[Row], fresh: dict[str, list[float]] | None, seed: int = 0) -> dict[str, FreshCheck]:
    """Each row's changed facts after the update against the row that follows it best (paired, same items),
    corrected with Holm over the rows tested: a row is flagged only when it survives the correction."""
    fresh = {r.name: fresh[r.name] for r in rows if fresh and fresh.get(r.name)}
    if not fresh:
        return {}
    means = {n: sum(s) / len(s) for n, s in fresh.items()}
    leader = max(fresh, key=lambda n: means[n])
    tested = {n: paired_compare(n, s, leader, fresh[leader], seed) for n, s in fresh.items() if n != leader}
    adjusted = dict(zip(tested, holm([c.p_value for c in tested.values()])))
    out = {}
    for name, s in fresh.items():
        e, c = mean_ci(s, seed), tested.get(name)
        fails = bool(c and adjusted[name] < ALPHA and c.diff != 0 and c.better == leader)
        out[name] = FreshCheck(name, (e.mean, e.low, e.high, e.n), leader, means[leader], c.p_value if c else 1.0,
                               fails, adjusted.get(name, 1.0))
    return out


def freshness_power(checks: dict[str, FreshCheck]) -> dict | None:
    """What the freshness check can detect: with few changed facts only a lopsided split is significant,
    and Holm over the rows makes it stricter still. Said beside every freshness result."""
    if not checks:
        return None
    n = max(c.after[3] for c in checks.values())
    tests = max(1, len(checks) - 1)
    alpha = ALPHA / tests  # Holm's first step
    least = min_discordant(alpha)
    detectable = detectable_difference(n, 0.0, alpha)
    flagged = sorted(name for name, c in checks.items() if c.fails)
    rows = f"{tests} row{'s' if tests != 1 else ''} tested against the one that follows the update best, Holm"
    if least > n:
        text = (f"The freshness check has {count(n)} changed facts and {rows}: a row would have to miss at least "
                f"{least} facts the leader gets (and get none it misses) to be flagged, so with {count(n)} no row can "
                f"be; a row that misses changed facts may pass unflagged. At least {least} changed facts are needed.")
    else:
        text = (f"The freshness check has {count(n)} changed facts and {rows}: a row is flagged only when it misses "
                f"at least {least} more of them than the leader (a {least}–0 split); the smallest gap it detects "
                f"{POWER:.0%} of the time is {100 * detectable:.0f} points (McNemar exact, alpha {alpha:.2g}), so a row "
                "that misses fewer may pass unflagged.")
    return {"n": n, "tests": tests, "alpha": alpha, "min_split": least, "detectable_difference": detectable,
            "flagged": flagged, "p_adjusted": {name: c.p_adjusted for name, c in checks.items()}, "text": text}


def _pair_plan(a: Row, b: Row, codes, alpha: float) -> tuple[str, float | None, int | None]:
    """(the paired test, the smallest gap it finds with POWER on these items, items for it to find a's observed
    lead over b) for two rows' scores, by the test actually used: McNemar's exact power for pass/fail items,
    the sign-flip test's normal approximation for graded scores or clusters."""
    x, y = a.scores, b.scores
    n = len(x)
    test = paired_test_name(x, y, codes)
    d = [p - q for p, q in zip(x, y)]
    if test == "McNemar exact":
        psi, gap = discordance(x, y), a.accuracy - b.accuracy
        return test, detectable_difference(n, psi, alpha), items_needed(abs(gap), max(psi, abs(gap)), alpha)
    return test, normal_detectable_difference(n, d, codes, alpha), normal_items_needed(d, codes, alpha)


def _check(pick: Row, other: Row, margin: float, clusters, codes, comparisons: dict, alpha: float,
           seed: int, plan: bool = True) -> NonInferiority:
    """Is `other` surely less than `margin` more accurate than the pick (upper end of the 95% interval)?"""
    gap = other.accuracy - pick.accuracy
    if pick.scores and other.scores:
        bound = difference_interval(other.scores, pick.scores, CONFIDENCE, clusters, seed)[1]
        d = [p - q for p, q in zip(other.scores, pick.scores)]
        binary = codes is None and is_binary(other.scores, pick.scores)
        needed = noninferiority_items(d, margin, codes, binary) if plan else None
        if needed is None and plan:  # the observed lead is beyond the margin: only a test of that lead can settle it
            needed = _pair_plan(other, pick, codes, alpha)[2]
    else:  # an older file without per-item scores: the stored comparison's interval
        ci = _gap_interval(other.name, pick.name, comparisons)
        bound, needed = (ci[1] if ci else 1.0), None
    return NonInferiority(other.name, gap, bound, bound < margin, needed)


def _evidence(rows: list[Row], contenders: list[Row], best: Row, pick: Row, comparisons: dict, margin: float,
              clusters=None, seed: int = 0, plan: bool = True) -> Evidence:
    """The checks behind the status; with plan=False (a re-decision that only needs the status), no power
    statements or items needed."""
    n = max((len(r.scores) for r in rows), default=0)
    tests = max(1, len(comparisons))
    alpha = ALPHA / tests  # Holm's first step: the strictest level a pair in this family faces
    codes = cluster_codes(clusters, n) if clusters is not None and n and all(len(r.scores) == n for r in rows) \
        else None
    checks = tuple(_check(pick, c, margin, clusters, codes, comparisons, alpha, seed, plan)
                   for c in contenders if c.name != pick.name)
    failing = [c for c in checks if not c.passes]
    by = {r.name: r for r in rows}
    others = [r for r in rows if r.name != pick.name]
    if checks:  # the pair the verdict turns on: the contender with the worst bound
        other = by[max(checks, key=lambda c: c.bound).row]
    else:
        other = max(others, key=lambda r: (r.accuracy, -r.complexity)) if others else None
    pair = gap = psi = detectable = None
    test = "McNemar exact"
    if other is not None:
        pair, gap = (other.name, pick.name), other.accuracy - pick.accuracy
        if other.scores and pick.scores:
            psi = discordance(other.scores, pick.scores)
            if plan:
                test, detectable, _ = _pair_plan(other, pick, codes, alpha)
        else:
            psi, detectable = abs(gap), (detectable_difference(n, abs(gap), alpha) if n else None)
    elif n and plan:
        detectable = detectable_difference(n, 0.0, alpha)
    needed = max((c.items_needed for c in failing), default=None) if all(c.items_needed for c in failing) else None
    why = ""
    if n < MIN_EVAL_ITEMS:
        why = (f"only {count(n)} eval items; a verdict needs at least {MIN_EVAL_ITEMS} (with fewer, one item moves "
               f"accuracy by {100 / max(n, 1):.0f} points)")
        needed = max(MIN_EVAL_ITEMS, needed or 0) if needed or not failing else None
    if best.accuracy <= 0:
        why, needed = (why + "; and " if why else "") + "no strategy got any eval item right", None
    elif failing and not why:
        c = max(failing, key=lambda c: c.bound)
        comp = _comparison(c.row, pick.name, comparisons)
        tested = ""
        if comp:
            lo, hi = _gap_interval(c.row, pick.name, comparisons)
            level = comp.get("confidence") or CONFIDENCE
            tested = (f"; the paired test does not show a gap either ({_p(comp)}; simultaneous {100 * level:.3g}% "
                      f"CI of the gap {100 * lo:+.0f} to {100 * hi:+.0f})") if not comp["significant"] else ""
        role = "cheaper" if pick.name != best.name else "the most accurate"
        why = (f"{pick.name} is {role}, but this sample cannot show it within {100 * margin:.0f} points of "
               f"{c.row}: {c.row} may be more accurate by up to {100 * c.bound:.0f} points (upper end of the 95% "
               f"interval of the gap, observed {100 * c.gap:+.0f}){tested}")
    return Evidence(n, MIN_EVAL_ITEMS, tests, ALPHA, POWER, pair, gap, psi, detectable, needed, not why, why,
                    margin, test, checks, int(codes.max()) + 1 if codes is not None else None)


def decide(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict[str, list[float]] | None = None,
           seed: int = 0, margin: float = DEFAULT_MARGIN, clusters=None, plan: bool = True,
           fresh_checks: dict[str, FreshCheck] | None = None) -> Verdict:
    """The verdict (rule in the module docstring). fresh_checks: freshness_checks(rows, fresh) computed once by
    a caller that re-decides many times (they depend only on the fresh scores)."""
    if spec.knowledge_changes_per_month <= 0:
        checks = {}
    else:
        checks = fresh_checks if fresh_checks is not None else freshness_checks(rows, fresh, seed)
    ruled_out, costed = {}, []
    for r in rows:
        if r.stopped:
            ruled_out[r.name] = r.stopped
        check = checks.get(r.name)
        if check and check.fails and not r.family.trains:
            ruled_out[r.name] = "does not follow a change of the documents and has no weights to retrain"
        if check and check.fails and r.family.trains:
            r = replace(r, costs=replace(r.costs, stale_after_update=True))
        costed.append(r)
    rows = costed
    econ = {r.name: economics(r.costs, spec) for r in rows}
    eligible = [r for r in rows if r.name not in ruled_out] or rows
    best = max(eligible, key=lambda r: (r.accuracy, -r.complexity))
    if priced(spec) and _scored(eligible):
        pick, evidence, money_decision = _decide_in_money(eligible, best, econ, comparisons, spec, margin, clusters,
                                                          seed, plan)
        return Verdict(pick.name, RECOMMENDED if evidence.enough else NOT_ENOUGH, [r.name for r in eligible],
                       baseline_of(rows).name, econ, evidence, ruled_out, checks, {r.name: r.costs for r in rows},
                       money_decision)
    contenders = [r for r in eligible if r is best or not _significantly_worse(r.name, best.name, comparisons)]
    cheapest = min(econ[r.name].total_cost for r in contenders)
    affordable = [r for r in contenders if econ[r.name].total_cost <= cheapest * (1 + COST_TIE) + 1e-12]
    pick = min(affordable, key=lambda r: (r.complexity, econ[r.name].total_cost))
    evidence = _evidence(eligible, contenders, best, pick, comparisons, margin, clusters, seed, plan)
    status = RECOMMENDED if evidence.enough else NOT_ENOUGH
    chosen = pick if evidence.enough else best
    return Verdict(chosen.name, status, [r.name for r in contenders], baseline_of(rows).name, econ, evidence,
                   ruled_out, checks, {r.name: r.costs for r in rows})


def _scored(rows: list[Row]) -> bool:
    """Every row has its per-item scores over the same items (the money decision resamples them paired)."""
    return bool(rows) and all(r.scores and len(r.scores) == len(rows[0].scores) for r in rows)


def _decide_in_money(eligible: list[Row], best: Row, econ: dict[str, Economics], comparisons: dict,
                     spec: EconomicsSpec, margin: float, clusters, seed: int,
                     plan: bool) -> tuple[Row, Evidence, ValueDecision]:
    """Rule 2-4 when the task prices quality: the highest expected net value, recommended when its expected loss
    is within the tolerance (advisor.value); the sample-size and no-row-right checks still apply first."""
    vd = decide_value([r.name for r in eligible], [r.complexity for r in eligible], [r.scores for r in eligible],
                      [econ[r.name].total_cost for r in eligible], spec, clusters, seed, plan)
    pick = next(r for r in eligible if r.name == vd.pick)
    evidence = _evidence(eligible, [pick], best, pick, comparisons, margin, clusters, seed, plan)
    if evidence.enough and not vd.enough:
        evidence = replace(evidence, enough=False, why=_value_why(vd))
    return pick, evidence, vd


def _value_why(vd: ValueDecision) -> str:
    ev, p, loss = vd.of(vd.pick)
    return (f"{vd.pick} has the highest expected net value over the horizon ({money(ev)}), but its expected loss "
            f"against the best-value row is {money(loss)} (it is the best-value row in {pct(p)} of {count(vd.draws)} "
            f"paired resamples of the eval items), above the tolerance of {money(vd.tolerance)} "
            f"({points_worth(vd.loss_tolerance)} over the horizon)")


def against_pick(scores: list[tuple[float, ...]], pick: int, other: int, k: int) -> list[list[tuple[float, ...]]]:
    """The scores with k item scores changed in favour of row `other` over the pick, two ways: the pick's right
    answers scored wrong, or the other's wrong answers scored right, on the items where the pick leads it most
    first (fragility's greedy step, aimed at one pair)."""
    lead = [a - b for a, b in zip(scores[pick], scores[other])]
    ways = []
    for row in (pick, other):
        can = [(x >= 0.5) == (row == pick) for x in scores[row]]
        items = [i for i in sorted(range(len(lead)), key=lambda i: -lead[i]) if can[i]][:k]
        if items:
            changed = [list(s) for s in scores]
            for i in items:
                changed[row][i] = _flipped(changed[row][i])
            ways.append([tuple(s) for s in changed])
    return ways


def settled_in_money(names: list[str], complexity: list[int], scores: list[tuple[float, ...]], totals: list[float],
                     spec: EconomicsSpec, clusters=None, seed: int = 0, robust: int = STOP_ROBUSTNESS) -> Stop | None:
    """Sequential evaluation's stop when the task prices quality (issue 32): the items answered so far already
    settle the decision in money, i.e. the pick's expected loss is within the tolerance (advisor.value), with at
    least MIN_EVAL_ITEMS items and some row right on one (the verdict's own first checks), and it stays so, on the
    same pick, when `robust` item scores change against the pick in favour of any other row. None: go on.

    A Bayesian rule: the posterior expected loss means the same whenever the evaluation stops, so it needs no
    correction for looking after every round; benchmarks/sequential_sim.py measures its realised loss. The
    robustness asks more: a stop that one or two scorer errors would overturn is not taken. The rows that could
    still overtake the pick (best in at least one resample) are the stop's contenders: they alone get the probes."""
    n = len(scores[0]) if scores else 0
    if not priced(spec) or len(names) < 2 or n < MIN_EVAL_ITEMS or not any(x > 0 for s in scores for x in s):
        return None
    vd = decide_value(names, complexity, scores, totals, spec, clusters, seed, plan=False)
    if not vd.enough:
        return None
    pick = names.index(vd.pick)
    for other in (j for j in range(len(names)) if j != pick):
        for changed in against_pick(scores, pick, other, robust):
            alt = decide_value(names, complexity, changed, totals, spec, clusters, seed, plan=False)
            if not alt.enough or alt.pick != vd.pick:
                return None
    _, p, loss = vd.of(vd.pick)
    contenders = tuple(name for name, q in zip(names, vd.p_best) if q > 0 or name == vd.pick)
    held = f", and stays so with any {robust} item scores changed against it" if robust else ""
    return Stop("the decision in money is settled",
                f"the decision in money is settled after {count(n)} items: {vd.pick} is the best-value row in "
                f"{pct(p)} of {count(vd.draws)} paired resamples, expected loss {money(loss)} within the tolerance of "
                f"{money(vd.tolerance)} ({points_worth(vd.loss_tolerance)}){held}", contenders)


# ---------------------------------------------------------------- fragility


def _flipped(x: float) -> float:
    """A changed item score: a pass/fail score flipped; a graded one set to the far end (0 or 1)."""
    return 0.0 if x >= 0.5 else 1.0


def _score_word(x: float) -> str:
    return "right" if x == 1 else "wrong" if x == 0 else f"{x:.2f}"


def fragility(rows: list[Row], spec: EconomicsSpec, fresh: dict[str, list[float]] | None = None, seed: int = 0,
              margin: float = DEFAULT_MARGIN, clusters=None, item_ids: list[str] | None = None,
              limit: int = FRAGILITY_SEARCH) -> dict:
    """The fewest item scores that, changed, change the verdict or its status: the fragility index of
    clinical trials (Walsh et al. 2014) applied to the whole decision.

    Every candidate is re-decided from the changed scores (new paired tests, Holm, checks), so what is
    reported really changes the verdict. One change is searched exhaustively (every item of every row);
    more by a greedy walk, for each ordered pair of leading rows, of the items where the second scores
    higher (first the leading row's score raised, or the other's lowered), then of the items they share,
    up to `limit` changes; a found set is pruned of changes it does not need. A count above one is thus
    the fewest this search found, an upper bound on the true minimum.
    """
    rows = [r for r in rows if not r.stopped] or rows  # a dropped row stays out whatever its scores
    n = len(rows[0].scores) if rows else 0
    if not n or any(len(r.scores) != n for r in rows):
        return {"count": None, "items": [], "changes": None,
                "text": "The verdict's fragility is not known: the rows' per-item scores are not all there."}
    ids = list(item_ids) if item_ids and len(item_ids) == n else [str(i + 1) for i in range(n)]
    base = {r.name: list(r.scores) for r in rows}
    fixed = freshness_checks(rows, fresh, seed)

    def verdict_of(changes: list[tuple[str, int]]) -> tuple[str, str]:
        scores = {name: list(s) for name, s in base.items()}
        for name, i in changes:
            scores[name][i] = _flipped(base[name][i])
        changed = []
        for r in rows:
            acc = sum(scores[r.name]) / n
            changed.append(replace(r, accuracy=acc, scores=tuple(scores[r.name]),
                                   costs=replace(r.costs, accuracy=acc)))
        comps = {(c.a, c.b): c.as_dict() for c in compare_all(scores, seed, clusters=clusters, intervals=False)}
        v = decide(changed, comps, spec, fresh, seed, margin, clusters, plan=False, fresh_checks=fixed)
        return v.strategy, v.status

    ref = verdict_of([])

    def change_of(got: tuple[str, str]) -> str | None:
        if got[1] != ref[1]:
            return "status"
        return "verdict" if ref[1] == RECOMMENDED and got[0] != ref[0] else None

    found: list[tuple[str, int]] | None = None
    for name in base:  # one change: every item of every row
        for i in range(n):
            if change_of(verdict_of([(name, i)])):
                found = [(name, i)]
                break
        if found:
            break
    if found is None:
        found = _greedy(rows, base, ref, verdict_of, change_of, limit)
    if found is None:
        return {"count": None, "items": [], "changes": None,
                "text": f"No change of up to {limit} item scores that the search tried changes this verdict "
                        "(fragility above the search's reach)."}
    for k in list(found):  # prune what the change does not need
        if len(found) > 1 and change_of(verdict_of([c for c in found if c != k])):
            found = [c for c in found if c != k]
    got = verdict_of(found)
    kind = change_of(got)
    items = [{"id": ids[i], "row": name, "from": base[name][i], "to": _flipped(base[name][i])} for name, i in found]
    return {"count": len(found), "items": items, "changes": kind, "text": _fragility_text(items, ref, got)}


def _greedy(rows: list[Row], base: dict[str, list[float]], ref: tuple[str, str], verdict_of, change_of,
            limit: int) -> list[tuple[str, int]] | None:
    leading = [r.name for r in sorted(rows, key=lambda r: (-r.accuracy, r.complexity))][:3]
    lead = [ref[0]] + [name for name in leading if name != ref[0]]
    best: list[tuple[str, int]] | None = None
    for x in lead:
        for y in lead:
            if x == y:
                continue
            ahead = sorted((i for i in range(len(base[x])) if base[y][i] > base[x][i]),
                           key=lambda i: (base[x][i] - base[y][i], i))
            raise_x = [i for i in ahead if base[x][i] < 0.5] + [i for i, v in enumerate(base[x])
                                                                if v < 0.5 and base[y][i] == v]
            lower_y = [i for i in ahead if base[y][i] >= 0.5] + [i for i, v in enumerate(base[y])
                                                                 if v >= 0.5 and base[x][i] == v]
            for row, order in ((x, raise_x), (y, lower_y)):
                walk = [(row, i) for i in order]
                reach = min(limit, len(best) - 1 if best else limit)
                for k in range(2, reach + 1):
                    if k > len(walk):
                        break
                    if change_of(verdict_of(walk[:k])):
                        best = walk[:k]
                        break
    return best


def _fragility_text(items: list[dict], ref: tuple[str, str], got: tuple[str, str]) -> str:
    now = "not enough evidence" if ref[1] != RECOMMENDED else f"recommended: {ref[0]}"
    then = "not enough evidence" if got[1] != RECOMMENDED else f"recommended: {got[0]}"
    said = [f"{it['row']}'s answer to {it['id']} scored {_score_word(it['to'])} instead of {_score_word(it['from'])}"
            for it in items]
    if len(items) == 1:
        return f"One item decides this verdict: with {said[0]}, it would change from {now} to {then}."
    listed = "; ".join(said[:5]) + (f"; and {len(said) - 5} more" if len(said) > 5 else "")
    return f"{len(items)} item scores decide this verdict: with {listed}, it would change from {now} to {then}."


# ---------------------------------------------------------------- reasons


def _est(r: Row) -> str:
    return _share(r.accuracy, (r.low, r.high))


def _share(mean: float, interval: tuple[float, float] | None) -> str:
    return f"{pct(mean)} (95% CI {pct(interval[0])}–{pct(interval[1])})" if interval else pct(mean)


def _why_wins(w: Row, other: Row, econ: dict[str, Economics], horizon: float) -> str:
    """The actual cause a tied row wins over another: cheaper over the horizon, or simpler at about the cost."""
    ew, eo = econ[w.name], econ[other.name]
    if ew.total_cost < eo.total_cost:
        return (f"{w.name} is cheaper over the {count(horizon)} days ({money(ew.total_cost)} against "
                f"{money(eo.total_cost)})")
    if w.complexity < other.complexity:
        return (f"{w.name} is simpler, at a cost within {COST_TIE:.0%} of the cheapest ({money(ew.total_cost)} "
                f"against {money(eo.total_cost)} over {count(horizon)} days)")
    return f"{w.name} is the most accurate of the tied rows"


def _p(c: dict | None) -> str:
    if not c:
        return "not compared"
    adjusted = c.get("p_adjusted", c["p_value"])
    return f"p={c['p_value']:.2g}, {adjusted:.2g} after Holm's correction"


def _tag_claims(w: Row, rows: list[Row], base: Row, item_tags: list[tuple[str, ...]], seed: int) -> tuple[list, list]:
    """(gains over the baseline, tags where another row is clearly better): only tags with MIN_TAG_ITEMS items,
    each claim significant after Holm's correction over the tags tested, cited with intervals and counts."""
    tags = sorted({t for ts in item_tags for t in ts})
    gains, losses = [], []
    if not w.scores or len(item_tags) != len(w.scores):
        return gains, losses
    for t in tags:
        idx = [i for i, ts in enumerate(item_tags) if t in ts]
        if len(idx) < MIN_TAG_ITEMS:
            continue
        mine = [w.scores[i] for i in idx]
        if base.name != w.name and base.scores:
            theirs = [base.scores[i] for i in idx]
            gains.append((t, idx, base, paired_compare(w.name, mine, base.name, theirs, seed)))
        leader = max(rows, key=lambda r: (sum(r.scores[i] for i in idx) if r.scores else -1, -r.complexity))
        if leader.name != w.name and leader.scores:
            theirs = [leader.scores[i] for i in idx]
            losses.append((t, idx, leader, paired_compare(w.name, mine, leader.name, theirs, seed)))
    for family in (gains, losses):
        for item, adjusted in zip(family, holm([c.p_value for *_, c in family])):
            item[-1].p_adjusted = adjusted
            item[-1].significant = bool(adjusted < ALPHA and item[-1].diff != 0)
    good = [g for g in gains if g[-1].significant and g[-1].better == w.name]
    bad = [x for x in losses if x[-1].significant and x[-1].better == x[2].name and -x[-1].diff >= TAG_GAP]
    return good, bad


def _tag_text(r: Row, idx: list[int], seed: int) -> str:
    e = mean_ci([r.scores[i] for i in idx], seed)
    return f"{pct(e.mean)} ({pct(e.low)}–{pct(e.high)})"


def reasons(rows: list[Row], comparisons: dict, spec: EconomicsSpec, v: Verdict, n_train: int,
            item_tags: list[tuple[str, ...]] | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    """(reasons for the verdict, cautions: what argues against it, shown beside it, never hidden)."""
    by = {r.name: r for r in rows}
    w, base = by[v.strategy], by[v.baseline]
    ew, eb = v.economics[w.name], v.economics[base.name]
    ev = v.evidence
    out: list[str] = []
    cautions: list[str] = []
    n = ev.n_items
    if v.status != RECOMMENDED:
        out.append(f"Not enough evidence for a recommendation: {ev.why}.")
        if w.accuracy > 0:
            out.append(f"{w.name} leads with {_est(w)} on {count(n)} eval items; that is not a recommendation.")
        if ev.items_needed and w.accuracy > 0:
            out.append(_needed_text(ev))
        if v.value is not None:
            out.extend(value_lines(v.value, by, spec, loss_said=ev.why == _value_why(v.value)))
        _detectable(ev, out)
        _freshness_reasons(v, by, spec, out)
        return out, cautions
    # 1. quality against the strongest alternative that lost (in money: the net values under uncertainty)
    best = max((by[c] for c in v.contenders), key=lambda r: (r.accuracy, -r.complexity))
    others = [r for r in rows if r.name != w.name and r.name not in v.ruled_out]
    if v.value is not None:
        out.extend(value_lines(v.value, by, spec))
    elif others:
        rival = max(others, key=lambda r: (r.accuracy, -r.complexity))
        c = _comparison(w.name, rival.name, comparisons)
        if best.name == w.name and c and c["significant"]:
            out.append(f"{w.name} is the most accurate: {_est(w)} on {count(n)} items, against {_est(rival)} for "
                       f"the next best, {rival.name}; the gap is significant ({_p(c)}).")
        elif best.name == w.name:
            out.append(f"{w.name} scores {_est(w)} on {count(n)} items; {rival.name} ({_est(rival)}) is not "
                       f"measurably different ({_p(c)}), and {_why_wins(w, rival, v.economics, spec.horizon_days)}.")
        else:
            ci, c = _gap_interval(best.name, w.name, comparisons), _comparison(best.name, w.name, comparisons)
            level = 100 * ((c.get("confidence") if c else None) or CONFIDENCE)
            gap = f" (gap {100 * (best.accuracy - w.accuracy):.0f} points, simultaneous {level:.3g}% CI " \
                  f"{100 * ci[0]:+.0f} to {100 * ci[1]:+.0f})" if ci else ""
            out.append(f"{w.name} scores {_est(w)} on {count(n)} items, statistically tied with the most accurate, "
                       f"{best.name} at {_est(best)}{gap}; {_why_wins(w, best, v.economics, spec.horizon_days)}.")
    if ev.checks:
        out.append(f"It is shown within the {100 * ev.margin:.0f}-point margin (decision.margin) of every other "
                   "contender: " + "; ".join(f"{c.row} is at most {100 * c.bound:+.0f} points ahead" for c in ev.checks)
                   + " (upper ends of the 95% intervals of the gaps).")
    # 2. where the quality comes from: per-tag gains that hold up
    gains, losses = _tag_claims(w, [r for r in rows if r.name not in v.ruled_out], base, item_tags or [], seed)
    if gains and w.name != base.name:
        t, idx, other, c = max(gains, key=lambda g: g[-1].diff)
        against = base.name if w.family == Family.PROMPTING else f"the prompting baseline ({base.name})"
        out.append(f"On “{t}” items ({len(idx)} of them) it gets {_tag_text(w, idx, seed)} right, against "
                   f"{_tag_text(other, idx, seed)} for {against} ({_p(c.as_dict())} over the tags tested).")
    if w.format_rate is not None and base.format_rate is not None and w.name != base.name:
        out.append(f"Its answers keep the required format {_share(w.format_rate, w.format_interval)} of the time, "
                   f"against {_share(base.format_rate, base.format_interval)} for {base.name} ({count(n)} items).")
    # 3. money
    if w.name != base.name and eb.cost_per_request > 0:
        delta = 1 - ew.cost_per_request / eb.cost_per_request
        word = "cheaper" if delta >= 0 else "dearer"
        out.append(f"A request costs {money(ew.cost_per_request)} against {money(eb.cost_per_request)} for {base.name} "
                   f"({pct(abs(delta))} {word}: {count(w.costs.prompt_tokens)} vs {count(base.costs.prompt_tokens)} "
                   "prompt tokens).")
        if ew.setup_cost > eb.setup_cost or ew.maintenance_cost > eb.maintenance_cost:
            out.append(_payback_text(w, base, ew, eb, spec))
    else:
        out.append(f"At {count(spec.requests_per_day)} requests/day over {count(spec.horizon_days)} days it costs "
                   f"{money(ew.total_cost)} in all, with no set-up to pay back.")
    # 4. knowledge that changes
    if spec.knowledge_changes_per_month > 0:
        retrain = [r for r in rows if v.economics[r.name].retrains]
        if retrain and not ew.retrains:
            r = retrain[0]
            out.append(f"The knowledge changes {spec.knowledge_changes_per_month:g} times a month "
                       f"({count(ew.changes_over_horizon)} changes over the horizon): each costs {r.name} a retrain "
                       f"({money(v.economics[r.name].cost_per_change)}: training time plus "
                       f"{money(spec.retrain_usd())} of people time), {w.name} "
                       + (f"a re-index ({money(ew.cost_per_change)})." if w.family.retrieves else "nothing to retrain."))
    _freshness_reasons(v, by, spec, out)
    if spec.knowledge_changes_per_month > 0 and ew.retrains:
        cautions.append(f"{w.name} needs a retrain to follow a knowledge change; at "
                        f"{spec.knowledge_changes_per_month:g} changes a month that is {count(ew.changes_over_horizon)} "
                        f"retrains over the horizon at {money(ew.cost_per_change)} each (counted in its cost), and it "
                        "answers from the old facts until each retrain is done.")
    for t, idx, leader, c in losses:
        cautions.append(f"on “{t}” items ({len(idx)} of them) {w.name} gets {_tag_text(w, idx, seed)}, against "
                        f"{_tag_text(leader, idx, seed)} for {leader.name} ({_p(c.as_dict())} over the tags tested); "
                        "if those items matter most, weigh the per-tag results over the overall score.")
    if w.family.trains and n_train < 100:
        cautions.append(f"only {n_train} training examples; a few hundred good ones make fine-tuning more reliable.")
    _detectable(ev, cautions, as_caution=True)
    return out, cautions


def value_lines(vd: ValueDecision, by: dict[str, Row], spec: EconomicsSpec, loss_said: bool = False) -> list[str]:
    """The money decision in words: expected net values, P(best), the pick's expected loss (unless the reason for
    not enough evidence said it), the price of a correct answer at which the runner-up would pay, the value of
    more items."""
    ev, p, loss = vd.of(vd.pick)
    priced = " and ".join(x for x in (
        f"a correct answer worth {money(vd.value_per_correct)}" if vd.value_per_correct is not None else "",
        f"an error costing {money(vd.cost_per_error)}" if vd.cost_per_error is not None else "") if x)
    out = []
    rival = max((name for name in vd.rows if name != vd.pick), key=lambda name: vd.of(name)[0], default=None)
    against = ""
    if rival is not None:
        other, p_other, _ = vd.of(rival)
        against = f", against {money(other)} for {rival} ({_est(by[rival])}; P(best) {pct(p_other)})"
    out.append(f"With {priced} (economics), {vd.pick} has the highest expected net value over "
               f"{count(spec.horizon_days)} days: {money(ev)} at {_est(by[vd.pick])}{against}.")
    gap = by[rival].accuracy - by[vd.pick].accuracy if rival is not None else 0.0
    if gap:  # net values are linear in the value of a correct answer: where the two cross
        crossing = (vd.value_per_correct or 0.0) - (vd.of(rival)[0] - ev) / (vd.requests * gap)
        if crossing > 0:
            when = "above" if gap > 0 else "below"
            out.append(f"At the measured accuracies {rival} would be the better buy {when} about {money(crossing)} a "
                       "correct answer.")
    unit = "clusters" if vd.clusters else "items"
    settled = "within" if vd.enough else "above"
    if not loss_said:
        out.append(f"{vd.pick} is the best-value row in {pct(p)} of {count(vd.draws)} paired resamples of the eval "
                   f"{unit} ({METHOD}); its expected loss against the best is {money(loss)}, {settled} the tolerance "
                   f"of {money(vd.tolerance)} ({points_worth(vd.loss_tolerance)}: {count(vd.requests)} requests x "
                   f"the value of a correct answer plus the cost of an error, x {100 * vd.loss_tolerance:g}%, "
                   "economics.loss_tolerance).")
    if vd.evsi:
        out.append(evsi_text(vd))
    return out


def evsi_text(vd: ValueDecision) -> str:
    """What more eval items are worth to this decision (expected value of sample information)."""
    sizes = ", ".join(f"{count(m)} more items about {money(gain)}" for m, gain in vd.evsi)
    if vd.settled:
        return (f"More eval items would not change it: the expected value of their information is below the "
                f"tolerance ({sizes}; preposterior simulation).")
    m, gain = max(vd.evsi, key=lambda x: x[1])
    return (f"Evaluating {count(m)} more eval items is worth about {money(gain)} to this decision ({sizes}; expected "
            "value of sample information, preposterior simulation).")


def _payback_text(w: Row, base: Row, ew: Economics, eb: Economics, spec: EconomicsSpec) -> str:
    pb = payback_days(ew, eb, spec.requests_per_day, spec.horizon_days)
    be = break_even_requests_per_day(ew, eb, spec.horizon_days)
    month = 365 / 12
    saving = (eb.cost_per_request - ew.cost_per_request) * spec.requests_per_day * month
    running = (ew.maintenance_cost - eb.maintenance_cost) / spec.horizon_days * month
    volume = f"{count(spec.requests_per_day)} requests/day"
    if pb is not None:
        text = (f"Its set-up ({money(ew.setup_cost)}) and running costs ({money(max(running, 0))}/month) are paid "
                f"back by what it saves ({money(saving)}/month at {volume}) after {count(pb)} days")
    elif saving - running <= 0:
        text = (f"It never pays back against {base.name}: its running costs ({money(running)}/month: ownership, "
                f"retrains, re-indexing) exceed what it saves ({money(saving)}/month at {volume}); it is chosen "
                "for its accuracy, not its cost")
    else:
        text = (f"It does not pay back its set-up ({money(ew.setup_cost)}) within the {count(spec.horizon_days)} "
                f"days at {volume}")
    if be is not None and be > 0:
        text += f"; over {count(spec.horizon_days)} days it costs less than {base.name} above {count(be)} requests/day"
    return text + "."


def _needed_text(ev: Evidence) -> str:
    """What "items needed" means for the check that failed: non-inferiority within the margin, or, when the
    observed lead is already beyond the margin, the paired test that would show the lead."""
    failing = [c for c in ev.checks if not c.passes and c.items_needed]
    head = f"About {count(ev.items_needed)} eval items would be needed"
    if not failing:
        return f"{head} for a verdict (at least {ev.min_items})."
    c = max(failing, key=lambda c: c.items_needed or 0)
    pick = ev.pair[1] if ev.pair else "the pick"
    if c.gap < ev.margin:
        return (f"{head}: at that size, if the items to come keep this sample's gap ({100 * c.gap:+.0f} points for "
                f"{c.row}) and disagreement, the upper end of the 95% interval of the gap between {c.row} and {pick} "
                f"falls below the {100 * ev.margin:.0f}-point margin {ev.power:.0%} of the time (normal form of the "
                f"interval; {ev.test} for the paired tests).")
    return (f"{head}: {c.row} leads {pick} by {100 * c.gap:.0f} points, beyond the {100 * ev.margin:.0f}-point "
            f"margin, and a paired test ({ev.test}) finds a gap that size {ev.power:.0%} of the time with that "
            "many items "
            f"(alpha {ALPHA:g}, Holm over {ev.tests} paired tests), if the items to come keep this "
            "sample's disagreement.")


def _detectable(ev: Evidence, out: list[str], as_caution: bool = False) -> None:
    if ev.detectable_difference is None:
        if ev.n_items:
            out.append(f"with {count(ev.n_items)} eval items no accuracy gap, however large, is detectable "
                       f"{ev.power:.0%} of the time at alpha {ev.alpha:g} over {ev.tests} paired tests ({ev.test}).")
        return
    if as_caution and ev.detectable_difference <= ev.margin:
        return
    text = (f"with {count(ev.n_items)} eval items the smallest accuracy gap this sample detects {ev.power:.0%} of "
            f"the time is {100 * ev.detectable_difference:.0f} points ({ev.test}, alpha {ev.alpha:.2g} over "
            f"{ev.tests} paired tests, Holm); smaller differences between rows go unseen.")
    out.append(text[0].upper() + text[1:] if not as_caution else text)


def _freshness_reasons(v: Verdict, by: dict[str, Row], spec: EconomicsSpec, out: list[str]) -> None:
    for name, check in v.fresh.items():
        if not check.fails:
            continue
        mean, low, high, n = check.after
        said = (f"{name} did not follow a change of the documents (freshness experiment: {pct(mean)} "
                f"({pct(low)}–{pct(high)}) of {count(n)} changed facts right after the update, against "
                f"{pct(check.leader_after)} for {check.leader}, p={check.p_value:.2g}, {check.p_adjusted:.2g} after "
                "Holm's correction over the rows)")
        if name in v.ruled_out:
            out.append(f"{said}; it has no weights to retrain, so on a task whose knowledge changes "
                       f"{spec.knowledge_changes_per_month:g} times a month it is ruled out.")
        else:
            e = v.economics[name]
            out.append(f"{said}; each of the {count(e.changes_over_horizon)} changes over the horizon costs it a "
                       f"retrain ({money(e.cost_per_change)}), charged in its cost.")


# ---------------------------------------------------------------- sensitivity


def sensitivity(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict | None = None,
                seed: int = 0, margin: float = DEFAULT_MARGIN, clusters=None) -> list[dict]:
    """Sweep volume and change frequency; report where the verdict flips."""
    flips, fixed = [], freshness_checks(rows, fresh, seed)
    for fieldname, values, unit in (
        ("requests_per_day", [spec.requests_per_day * f for f in _factors()], "requests/day"),
        ("knowledge_changes_per_month", [0, 0.25, 0.5, 1, 2, 4, 8, 16, 30, 60], "changes/month"),
    ):
        seen = []
        for value in values:
            alt = decide(rows, comparisons, spec.model_copy(update={fieldname: value}), fresh, seed, margin,
                         clusters, plan=False, fresh_checks=fixed).label
            seen.append((value, alt))
        for (v0, a0), (v1, a1) in zip(seen, seen[1:]):
            if a0 != a1:
                flips.append({"field": fieldname, "unit": unit, "between": [v0, v1], "from": a0, "to": a1})
    if priced(spec):
        flips += value_flips(rows, comparisons, spec, fresh, seed, margin, clusters, fixed)
    return flips


def value_flips(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict | None = None, seed: int = 0,
                margin: float = DEFAULT_MARGIN, clusters=None, fixed: dict | None = None) -> list[dict]:
    """The values of a correct answer at which the money verdict changes: a sweep from 0 and 1/1000x to 1000x of
    the stated value (of cost_per_error when that is the only price, else of $1), each change then located by
    bisection to within 1%."""
    def label(x: float) -> str:
        return decide(rows, comparisons, spec.model_copy(update={"value_per_correct": x}), fresh, seed, margin,
                      clusters, plan=False, fresh_checks=fixed).label

    base = spec.value_per_correct or spec.cost_per_error or 1.0
    seen = [(x, label(x)) for x in [0.0] + [base * f for f in _factors()]]
    flips = []
    for (lo, a), (hi, b) in zip(seen, seen[1:]):
        if a == b:
            continue
        while hi - lo > 0.01 * hi:
            mid = (lo + hi) / 2 if lo == 0 else (lo * hi) ** 0.5
            lo, hi = (mid, hi) if label(mid) == a else (lo, mid)
        flips.append({"field": "value_per_correct", "unit": "$ per correct answer", "between": [lo, hi], "from": a,
                      "to": label(hi)})
    return flips


def if_priced(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict | None = None, seed: int = 0,
              margin: float = DEFAULT_MARGIN, clusters=None) -> str:
    """On a task that sets no price: the verdict the decision in money would reach at each value of a correct
    answer from $0 to $1,000 (cost_per_error unset), so a reader sees where a price would settle it."""
    at = spec.model_copy(update={"value_per_correct": 0.0})
    fixed = freshness_checks(rows, fresh, seed)
    start = decide(rows, comparisons, at, fresh, seed, margin, clusters, plan=False, fresh_checks=fixed).label
    flips = value_flips(rows, comparisons, at, fresh, seed, margin, clusters, fixed)
    said = ", then ".join([start] + [f"{f['to']} from about {money(f['between'][1])}" for f in flips])
    return (f"were a correct answer priced (economics.value_per_correct; the task sets no price, so the margin rule "
            f"decides), the verdict would be {said} (values from $0 to $1,000 tried)")


def _factors() -> list[float]:
    return [10 ** (e / 4) for e in range(-12, 13)]  # 1/1000x .. 1000x, 4 steps a decade


def describe_flip(f: dict) -> str:
    lo, hi = f["between"]
    if f["field"] == "value_per_correct":
        return (f"at a value per correct answer of about {money(hi)} (economics.value_per_correct) the verdict "
                f"changes from {f['from']} to {f['to']}")
    return f"between {count(lo)} and {count(hi)} {f['unit']} the verdict changes from {f['from']} to {f['to']}"


def margin_rule(margin: float) -> str:
    return ("on a task whose knowledge changes, a row that does not follow a document change (paired exact test, "
            "Holm over the rows) pays a retrain per change, or is ruled out if it cannot be retrained; keep "
            f"strategies not significantly less accurate than the best (paired tests, alpha {ALPHA:g}, "
            "Holm-corrected over all pairs); of those, the lowest total cost over the horizon, preferring the "
            f"simpler within {COST_TIE:.0%}; not enough evidence below {MIN_EVAL_ITEMS} eval items, when no row "
            "gets anything right, or unless the pick is shown less than the margin "
            f"({100 * margin:.0f} points, decision.margin) less accurate than every other contender (upper end "
            "of the 95% interval of each gap)")


def value_rule(margin: float, spec: EconomicsSpec) -> str:
    return ("on a task whose knowledge changes, a row that does not follow a document change (paired exact test, "
            "Holm over the rows) pays a retrain per change, or is ruled out if it cannot be retrained; the task prices "
            "quality (economics.value_per_correct / cost_per_error), so the pick is the row of highest expected net "
            "value over the horizon (value of its correct answers minus the cost of its errors minus its total cost), "
            f"uncertainty from a {METHOD} of the eval items (clusters resampled whole when items share one, the "
            "same weights for every row); recommended when its expected loss against the best-value row is at most "
            f"{points_worth(spec.loss_tolerance)} over the horizon (economics.loss_tolerance); not enough evidence "
            f"below {MIN_EVAL_ITEMS} eval items, when no row gets anything right, or above that loss, with the value of "
            f"{', '.join(map(str, EVSI_ITEMS))} more items (preposterior simulation). Without prices the "
            f"margin rule ({100 * margin:.0f} points, decision.margin) decides")


def explain(rows: list[Row], comparisons: dict, spec: EconomicsSpec, v: Verdict, n_train: int,
            item_tags: list[tuple[str, ...]] | None = None, fresh: dict[str, list[float]] | None = None,
            seed: int = 0, margin: float = DEFAULT_MARGIN, clusters=None, item_ids: list[str] | None = None) -> dict:
    """A verdict as results.json holds it: reasons, cautions, what would flip it, how fragile it is, the
    evidence behind it."""
    said, cautions = reasons(rows, comparisons, spec, v, n_train, item_tags, seed)
    flips = sensitivity(rows, comparisons, spec, fresh, seed, margin, clusters)
    fragile = fragility(rows, spec, fresh, seed, margin, clusters, item_ids)
    fresh_power = freshness_power(v.fresh)
    if fresh_power:
        cautions.append(fresh_power["text"])
    return {
        "strategy": v.strategy,
        "status": v.status,
        "baseline": v.baseline,
        "contenders": v.contenders,
        "ruled_out": v.ruled_out,
        "evidence": v.evidence.as_dict(),
        "reasons": said,
        "cautions": cautions,
        "sensitivity": flips,
        "sensitivity_text": ([describe_flip(f) for f in flips] or
                             ["no volume between 1/1000x and 1000x of the stated one, and no change frequency "
                              "up to 60 a month" + (", and no value of a correct answer from 0 to 1000x the stated "
                                                    "one" if v.value else "") + ", changes the verdict"])
                            + ([] if v.value or not _scored(rows) else
                               [if_priced(rows, comparisons, spec, fresh, seed, margin, clusters)]),
        "fragility": fragile,
        "freshness": fresh_power,
        "value": v.value.as_dict() if v.value else None,
        "rule": value_rule(margin, spec) if v.value else margin_rule(margin),
    }


def recommend(rows: list[Row], comparisons: dict, spec: EconomicsSpec, n_train: int,
              item_tags: list[tuple[str, ...]] | None = None, fresh: dict[str, list[float]] | None = None,
              seed: int = 0, margin: float = DEFAULT_MARGIN, clusters=None, item_ids: list[str] | None = None) -> dict:
    """decide + explain. rows carry their per-item scores (eval order); item_tags are each eval item's tags;
    fresh holds each row's per-item scores on the changed facts after the freshness experiment's update;
    clusters, when given, each eval item's cluster label (items sharing one are not independent)."""
    v = decide(rows, comparisons, spec, fresh, seed, margin, clusters)
    return explain(rows, comparisons, spec, v, n_train, item_tags, fresh, seed, margin, clusters, item_ids)
