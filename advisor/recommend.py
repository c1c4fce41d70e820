"""The recommendation: a deterministic function of measured results and the user's situation.

Rule, following the field's guidance while the numbers decide within it:
1. Quality first: keep every strategy not significantly worse than the most
   accurate one (paired test on the same eval items). A difference that is not
   significant is never called better.
2. Among those, the lowest total cost over the horizon wins; a simpler strategy
   within COST_TIE of the cheapest is preferred (start simple).
Reasons cite the numbers; sensitivity re-runs the same rule under other volumes
and change frequencies to say what would flip the verdict.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from advisor.economics import Economics, StrategyCosts, break_even_requests_per_day, economics, payback_days
from advisor.formatting import money, pct
from advisor.kinds import Family
from advisor.task import EconomicsSpec

COST_TIE = 0.10  # a simpler strategy within 10% of the cheapest total cost counts as tied


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

    def __post_init__(self):
        self.family = Family(self.family)  # also when read back from results.json as a plain string


@dataclass
class Verdict:
    strategy: str
    contenders: list[str]
    baseline: str
    economics: dict[str, Economics]


def _significantly_worse(a: str, b: str, comparisons: dict[tuple[str, str], dict]) -> bool:
    """Is a significantly worse than b? Looks the pair up in either order."""
    if (a, b) in comparisons:
        c = comparisons[(a, b)]
        return c["significant"] and c["diff"] < 0
    if (b, a) in comparisons:
        c = comparisons[(b, a)]
        return c["significant"] and c["diff"] > 0
    return False


def baseline_of(rows: list[Row]) -> Row:
    """The prompting baseline: the most accurate prompting row (simplest on a tie)."""
    prompting = [r for r in rows if r.family == Family.PROMPTING] or rows
    return max(prompting, key=lambda r: (r.accuracy, -r.complexity))


def decide(rows: list[Row], comparisons: dict, spec: EconomicsSpec) -> Verdict:
    econ = {r.name: economics(r.costs, spec) for r in rows}
    best = max(rows, key=lambda r: (r.accuracy, -r.complexity))
    contenders = [r for r in rows if r is best or not _significantly_worse(r.name, best.name, comparisons)]
    cheapest = min(econ[r.name].total_cost for r in contenders)
    affordable = [r for r in contenders if econ[r.name].total_cost <= cheapest * (1 + COST_TIE) + 1e-12]
    winner = min(affordable, key=lambda r: (r.complexity, econ[r.name].total_cost))
    return Verdict(winner.name, [r.name for r in contenders], baseline_of(rows).name, econ)


def reasons(rows: list[Row], comparisons: dict, spec: EconomicsSpec, v: Verdict,
            n_train: int) -> tuple[list[str], list[str]]:
    """(reasons for the verdict, cautions: what argues against it, shown beside it, never hidden)."""
    by = {r.name: r for r in rows}
    w, base = by[v.strategy], by[v.baseline]
    ew, eb = v.economics[w.name], v.economics[base.name]
    out: list[str] = []
    cautions: list[str] = []
    best = max(rows, key=lambda r: (r.accuracy, -r.complexity))
    # 1. quality against the strongest alternative that lost
    others = [r for r in rows if r.name != w.name]
    if others:
        rival = max(others, key=lambda r: r.accuracy)
        c = comparisons.get((w.name, rival.name)) or comparisons.get((rival.name, w.name))
        p = f"p={c['p_value']:.3g}" if c else "not compared"
        if best.name == w.name and c and c["significant"]:
            out.append(f"{w.name} is the most accurate: {pct(w.accuracy)} (95% CI {pct(w.low)}–{pct(w.high)}) "
                       f"against {pct(rival.accuracy)} for the next best, {rival.name}; the gap is significant ({p}).")
        elif best.name == w.name:
            out.append(f"{w.name} scores {pct(w.accuracy)} (95% CI {pct(w.low)}–{pct(w.high)}); {rival.name} "
                       f"({pct(rival.accuracy)}) is statistically tied with it ({p}), and {w.name} costs less or is simpler.")
        else:
            out.append(f"{w.name} scores {pct(w.accuracy)} (95% CI {pct(w.low)}–{pct(w.high)}), statistically tied "
                       f"with the most accurate, {best.name} at {pct(best.accuracy)}; the tie goes to the cheaper/simpler one.")
    # 2. where the quality comes from: the tag with the largest gain over the prompting baseline
    if w.name != base.name and w.by_tag:
        tag, gain = max(((t, w.by_tag[t] - base.by_tag.get(t, 0)) for t in w.by_tag), key=lambda kv: kv[1])
        if gain > 0:
            against = base.name if w.family == Family.PROMPTING else f"the prompting baseline ({base.name})"
            out.append(f"On `{tag}` items it gets {pct(w.by_tag[tag])} right, against {pct(base.by_tag.get(tag, 0))} "
                       f"for {against}.")
    if w.format_rate is not None and base.format_rate is not None and w.name != base.name:
        out.append(f"Its answers keep the required format {pct(w.format_rate)} of the time, against "
                   f"{pct(base.format_rate)} for {base.name}.")
    # 3. money
    if w.name != base.name and eb.cost_per_request > 0:
        delta = 1 - ew.cost_per_request / eb.cost_per_request
        word = "cheaper" if delta >= 0 else "dearer"
        out.append(f"A request costs {money(ew.cost_per_request)} against {money(eb.cost_per_request)} for {base.name} "
                   f"({pct(abs(delta))} {word}: {w.costs.prompt_tokens:.0f} vs {base.costs.prompt_tokens:.0f} prompt tokens).")
        if ew.setup_cost > eb.setup_cost:
            be = break_even_requests_per_day(ew, eb, spec.horizon_days)
            pb = payback_days(ew, eb, spec.requests_per_day)
            if be is not None and pb is not None:
                out.append(f"Its set-up ({money(ew.setup_cost)}) pays for itself in {pb:.1f} days at "
                           f"{spec.requests_per_day:,.0f} requests/day; it beats {base.name} over "
                           f"{spec.horizon_days:.0f} days above {be:,.1f} requests/day.")
    else:
        out.append(f"At {spec.requests_per_day:,.0f} requests/day over {spec.horizon_days:.0f} days it costs "
                   f"{money(ew.total_cost)} in all, with no set-up to pay back.")
    # 4. knowledge that changes
    if spec.knowledge_changes_per_month > 0:
        in_weights = [r for r in rows if r.costs.knowledge_in_weights]
        if in_weights and not w.costs.knowledge_in_weights:
            per_year = spec.knowledge_changes_per_month * 12
            out.append(f"The knowledge changes {spec.knowledge_changes_per_month:g} times a month: a strategy that keeps it "
                       f"in the weights ({in_weights[0].name}) would need {per_year:.0f} retrains a year; "
                       f"{w.name} only re-indexes or edits its prompt.")
    if spec.knowledge_changes_per_month > 0 and w.costs.knowledge_in_weights:
        cautions.append(f"{w.name} keeps what it knows in its weights; at {spec.knowledge_changes_per_month:g} "
                        f"knowledge changes a month that is {ew.changes_over_horizon:.0f} retrains over the horizon "
                        "(counted in its cost), and it does not follow a document change until it is retrained.")
    for tag, mine in sorted(w.by_tag.items()):
        leader = max(rows, key=lambda r: r.by_tag.get(tag, 0))
        if leader.by_tag.get(tag, 0) - mine >= 0.2:
            cautions.append(f"on `{tag}` items {w.name} gets {pct(mine)}, against {pct(leader.by_tag[tag])} for "
                       f"{leader.name}; if those items matter most, weigh the per-tag results over the overall score.")
    if w.family.trains and n_train < 100:
        cautions.append(f"only {n_train} training examples; a few hundred good ones make fine-tuning more reliable.")
    return out, cautions


def sensitivity(rows: list[Row], comparisons: dict, spec: EconomicsSpec, winner: str) -> list[dict]:
    """Sweep volume and change frequency; report where the verdict flips."""
    flips = []
    for fieldname, values, unit in (
        ("requests_per_day", [spec.requests_per_day * f for f in _factors()], "requests/day"),
        ("knowledge_changes_per_month", [0, 0.25, 0.5, 1, 2, 4, 8, 16, 30, 60], "changes/month"),
    ):
        seen = []
        for value in values:
            alt = decide(rows, comparisons, spec.model_copy(update={fieldname: value})).strategy
            seen.append((value, alt))
        for (v0, a0), (v1, a1) in zip(seen, seen[1:]):
            if a0 != a1:
                flips.append({"field": fieldname, "unit": unit, "between": [v0, v1], "from": a0, "to": a1})
    return flips


def _factors() -> list[float]:
    return [10 ** (e / 4) for e in range(-12, 13)]  # 1/1000x .. 1000x, 4 steps a decade


def describe_flip(f: dict) -> str:
    lo, hi = f["between"]
    return f"between {lo:,.3g} and {hi:,.3g} {f['unit']} the verdict changes from {f['from']} to {f['to']}"


def recommend(rows: list[Row], comparisons: dict, spec: EconomicsSpec, n_train: int) -> dict:
    v = decide(rows, comparisons, spec)
    said, cautions = reasons(rows, comparisons, spec, v, n_train)
    flips = sensitivity(rows, comparisons, spec, v.strategy)
    return {
        "strategy": v.strategy,
        "baseline": v.baseline,
        "contenders": v.contenders,
        "reasons": said,
        "cautions": cautions,
        "sensitivity": flips,
        "sensitivity_text": [describe_flip(f) for f in flips] or
                            ["no volume between 1/1000x and 1000x of the stated one, and no change frequency "
                             "up to 60 a month, changes the verdict"],
        "rule": "keep strategies not significantly less accurate than the best (paired test, alpha 0.05); "
                f"of those, the lowest total cost over the horizon, preferring the simpler within {COST_TIE:.0%}",
    }
