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
   when the pick is a cheaper row whose gap to the most accurate one could exceed
   TIE_MARGIN (95% interval), the verdict is "not enough evidence", with the number of eval
   items a power calculation says would be needed.
Reasons cite the numbers with their intervals and the sample they rest on; sensitivity
re-runs the same rule under other volumes and change frequencies to say what would flip it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from advisor.economics import Economics, StrategyCosts, break_even_requests_per_day, economics, payback_days
from advisor.formatting import count, money, pct
from advisor.kinds import Family
from advisor.stats import (ALPHA, POWER, detectable_difference, discordance, holm, items_needed, mean_ci,
                           paired_compare)
from advisor.task import EconomicsSpec

COST_TIE = 0.10  # a simpler strategy within 10% of the cheapest total cost counts as tied
MIN_EVAL_ITEMS = 30  # fewer eval items than this: one item moves accuracy by more than 3 points
TIE_MARGIN = 0.10  # a cheaper row may win over a more accurate one only if the gap is surely below 10 points
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
    items_needed: int | None  # eval items to tell the pair apart (None: more than 100,000, or nothing to tell)
    enough: bool
    why: str  # when not enough: the cause, in words

    def as_dict(self) -> dict:
        return {"n_items": self.n_items, "min_items": self.min_items, "tests": self.tests, "alpha": self.alpha,
                "power": self.power, "pair": list(self.pair) if self.pair else None, "gap": self.gap,
                "disagreement": self.disagreement, "detectable_difference": self.detectable_difference,
                "items_needed": self.items_needed, "enough": self.enough, "why": self.why}


@dataclass(frozen=True)
class FreshCheck:
    """One row against the freshness experiment: its share of the changed facts after the update."""

    name: str
    after: tuple[float, float, float, int]  # mean, low, high, n
    leader: str  # the row that follows the update best
    leader_after: float
    p_value: float
    fails: bool  # significantly worse than the leader on the changed facts


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
    """Each row's changed facts after the update against the row that follows it best (paired, same items)."""
    fresh = {r.name: fresh[r.name] for r in rows if fresh and fresh.get(r.name)}
    if not fresh:
        return {}
    means = {n: sum(s) / len(s) for n, s in fresh.items()}
    leader = max(fresh, key=lambda n: means[n])
    out = {}
    for name, s in fresh.items():
        e = mean_ci(s, seed)
        c = paired_compare(name, s, leader, fresh[leader], seed) if name != leader else None
        fails = bool(c and c.significant and c.better == leader)
        out[name] = FreshCheck(name, (e.mean, e.low, e.high, e.n), leader, means[leader], c.p_value if c else 1.0,
                               fails)
    return out


def _evidence(rows: list[Row], best: Row, pick: Row, comparisons: dict) -> Evidence:
    n = max((len(r.scores) for r in rows), default=0)
    tests = max(1, len(comparisons))
    alpha = ALPHA / tests  # Holm's first step: the strictest level a pair in this family faces
    others = [r for r in rows if r.name != best.name]
    other = pick if pick.name != best.name else (max(others, key=lambda r: (r.accuracy, -r.complexity))
                                                 if others else None)
    pair = gap = psi = needed = None
    if other is not None:
        pair, gap = (best.name, other.name), best.accuracy - other.accuracy
        psi = discordance(best.scores, other.scores) if best.scores and other.scores else gap
        plan = max(gap, TIE_MARGIN)
        needed = items_needed(plan, max(psi, plan), alpha)
    detectable = detectable_difference(n, psi or 0.0, alpha) if n else None
    why = ""
    if n < MIN_EVAL_ITEMS:
        why = (f"only {count(n)} eval items; a verdict needs at least {MIN_EVAL_ITEMS} (with fewer, one item moves "
               f"accuracy by {100 / max(n, 1):.0f} points)")
        needed = max(MIN_EVAL_ITEMS, needed) if needed else (MIN_EVAL_ITEMS if other is None else None)
    if best.accuracy <= 0:
        why, needed = (why + "; and " if why else "") + "no strategy got any eval item right", None
    elif pick.name != best.name and not why:
        ci = _gap_interval(best.name, pick.name, comparisons)
        if ci is None or ci[1] > TIE_MARGIN:
            upto = f"up to {100 * ci[1]:.0f} points (95% CI of the gap {100 * ci[0]:+.0f} to {100 * ci[1]:+.0f})" \
                if ci else "by an unknown amount (not compared)"
            why = (f"{pick.name} is cheaper, but this sample cannot tell it from the most accurate row, "
                   f"{best.name}: {pick.name} may be worse by {upto}")
    return Evidence(n, MIN_EVAL_ITEMS, tests, ALPHA, POWER, pair, gap, psi, detectable, needed, not why, why)


def decide(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict[str, list[float]] | None = None,
           seed: int = 0) -> Verdict:
    checks = freshness_checks(rows, fresh, seed) if spec.knowledge_changes_per_month > 0 else {}
    ruled_out, costed = {}, []
    for r in rows:
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
    contenders = [r for r in eligible if r is best or not _significantly_worse(r.name, best.name, comparisons)]
    cheapest = min(econ[r.name].total_cost for r in contenders)
    affordable = [r for r in contenders if econ[r.name].total_cost <= cheapest * (1 + COST_TIE) + 1e-12]
    pick = min(affordable, key=lambda r: (r.complexity, econ[r.name].total_cost))
    evidence = _evidence(eligible, best, pick, comparisons)
    status = RECOMMENDED if evidence.enough else NOT_ENOUGH
    chosen = pick if evidence.enough else best
    return Verdict(chosen.name, status, [r.name for r in contenders], baseline_of(rows).name, econ, evidence,
                   ruled_out, checks, {r.name: r.costs for r in rows})


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
        if ev.items_needed and ev.pair and w.accuracy > 0:
            a, b = ev.pair
            plan = max(ev.gap or 0.0, TIE_MARGIN)
            out.append(f"About {count(ev.items_needed)} eval items would be needed: with them McNemar's exact test "
                       f"detects a gap of {100 * plan:.0f} points between {a} and {b} {ev.power:.0%} of the time "
                       f"(alpha {ev.alpha:g} split over {ev.tests} paired tests, Holm), if they disagree on "
                       f"{pct(max(ev.disagreement or 0.0, plan))} of the items (here: {pct(ev.disagreement or 0.0)}).")
        _detectable(ev, out)
        _freshness_reasons(v, by, spec, out)
        return out, cautions
    # 1. quality against the strongest alternative that lost
    best = max((by[c] for c in v.contenders), key=lambda r: (r.accuracy, -r.complexity))
    others = [r for r in rows if r.name != w.name and r.name not in v.ruled_out]
    if others:
        rival = max(others, key=lambda r: (r.accuracy, -r.complexity))
        c = _comparison(w.name, rival.name, comparisons)
        if best.name == w.name and c and c["significant"]:
            out.append(f"{w.name} is the most accurate: {_est(w)} on {count(n)} items, against {_est(rival)} for "
                       f"the next best, {rival.name}; the gap is significant ({_p(c)}).")
        elif best.name == w.name:
            out.append(f"{w.name} scores {_est(w)} on {count(n)} items; {rival.name} ({_est(rival)}) is not "
                       f"measurably different ({_p(c)}), and {_why_wins(w, rival, v.economics, spec.horizon_days)}.")
        else:
            ci = _gap_interval(best.name, w.name, comparisons)
            gap = f" (gap {100 * (best.accuracy - w.accuracy):.0f} points, 95% CI {100 * ci[0]:+.0f} to " \
                  f"{100 * ci[1]:+.0f})" if ci else ""
            out.append(f"{w.name} scores {_est(w)} on {count(n)} items, statistically tied with the most accurate, "
                       f"{best.name} at {_est(best)}{gap}; {_why_wins(w, best, v.economics, spec.horizon_days)}.")
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


def _detectable(ev: Evidence, out: list[str], as_caution: bool = False) -> None:
    if ev.detectable_difference is None:
        if ev.n_items:
            out.append(f"with {count(ev.n_items)} eval items no accuracy gap, however large, is detectable "
                       f"{ev.power:.0%} of the time at alpha {ev.alpha:g} over {ev.tests} paired tests.")
        return
    if as_caution and ev.detectable_difference <= TIE_MARGIN:
        return
    text = (f"with {count(ev.n_items)} eval items the smallest accuracy gap this sample detects {ev.power:.0%} of "
            f"the time is {100 * ev.detectable_difference:.0f} points (McNemar exact, alpha {ev.alpha:g} over "
            f"{ev.tests} paired tests, Holm); smaller differences between rows go unseen.")
    out.append(text[0].upper() + text[1:] if not as_caution else text)


def _freshness_reasons(v: Verdict, by: dict[str, Row], spec: EconomicsSpec, out: list[str]) -> None:
    for name, check in v.fresh.items():
        if not check.fails:
            continue
        mean, low, high, n = check.after
        said = (f"{name} did not follow a change of the documents (freshness experiment: {pct(mean)} "
                f"({pct(low)}–{pct(high)}) of {count(n)} changed facts right after the update, against "
                f"{pct(check.leader_after)} for {check.leader}, p={check.p_value:.2g})")
        if name in v.ruled_out:
            out.append(f"{said}; it has no weights to retrain, so on a task whose knowledge changes "
                       f"{spec.knowledge_changes_per_month:g} times a month it is ruled out.")
        else:
            e = v.economics[name]
            out.append(f"{said}; each of the {count(e.changes_over_horizon)} changes over the horizon costs it a "
                       f"retrain ({money(e.cost_per_change)}), charged in its cost.")


# ---------------------------------------------------------------- sensitivity


def sensitivity(rows: list[Row], comparisons: dict, spec: EconomicsSpec, fresh: dict | None = None,
                seed: int = 0) -> list[dict]:
    """Sweep volume and change frequency; report where the verdict flips."""
    flips = []
    for fieldname, values, unit in (
        ("requests_per_day", [spec.requests_per_day * f for f in _factors()], "requests/day"),
        ("knowledge_changes_per_month", [0, 0.25, 0.5, 1, 2, 4, 8, 16, 30, 60], "changes/month"),
    ):
        seen = []
        for value in values:
            alt = decide(rows, comparisons, spec.model_copy(update={fieldname: value}), fresh, seed).label
            seen.append((value, alt))
        for (v0, a0), (v1, a1) in zip(seen, seen[1:]):
            if a0 != a1:
                flips.append({"field": fieldname, "unit": unit, "between": [v0, v1], "from": a0, "to": a1})
    return flips


def _factors() -> list[float]:
    return [10 ** (e / 4) for e in range(-12, 13)]  # 1/1000x .. 1000x, 4 steps a decade


def describe_flip(f: dict) -> str:
    lo, hi = f["between"]
    return f"between {count(lo)} and {count(hi)} {f['unit']} the verdict changes from {f['from']} to {f['to']}"


def explain(rows: list[Row], comparisons: dict, spec: EconomicsSpec, v: Verdict, n_train: int,
            item_tags: list[tuple[str, ...]] | None = None, fresh: dict[str, list[float]] | None = None,
            seed: int = 0) -> dict:
    """A verdict as results.json holds it: reasons, cautions, what would flip it, the evidence behind it."""
    said, cautions = reasons(rows, comparisons, spec, v, n_train, item_tags, seed)
    flips = sensitivity(rows, comparisons, spec, fresh, seed)
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
        "sensitivity_text": [describe_flip(f) for f in flips] or
                            ["no volume between 1/1000x and 1000x of the stated one, and no change frequency "
                             "up to 60 a month, changes the verdict"],
        "rule": "on a task whose knowledge changes, a row that does not follow a document change pays a retrain per "
                "change, or is ruled out if it cannot be retrained; keep strategies not significantly less accurate "
                f"than the best (paired tests, alpha {ALPHA:g}, Holm-corrected over all pairs); of those, the lowest "
                f"total cost over the horizon, preferring the simpler within {COST_TIE:.0%}; not enough evidence "
                f"below {MIN_EVAL_ITEMS} eval items, when no row gets anything right, or when a cheaper pick could be "
                f"more than {100 * TIE_MARGIN:.0f} points less accurate than the best (95% interval)",
    }


def recommend(rows: list[Row], comparisons: dict, spec: EconomicsSpec, n_train: int,
              item_tags: list[tuple[str, ...]] | None = None, fresh: dict[str, list[float]] | None = None,
              seed: int = 0) -> dict:
    """decide + explain. rows carry their per-item scores (eval order); item_tags are each eval item's tags;
    fresh holds each row's per-item scores on the changed facts after the freshness experiment's update."""
    return explain(rows, comparisons, spec, decide(rows, comparisons, spec, fresh, seed), n_train, item_tags,
                   fresh, seed)
