"""Cost model: per-request cost, set-up, maintenance, total cost over the horizon, ROI, break-even, payback.

All inputs are measured (token counts, training and indexing wall time) or come
from the task's stated assumptions (prices, volume, horizon, change frequency,
ownership: people and hosting). A knowledge change costs a row that keeps its
knowledge in its weights a retrain (compute + people), a retrieval row a re-index.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from advisor.kinds import Family, PricingKind
from advisor.task import EconomicsSpec, GeneratorSpec

DAYS_PER_MONTH = 365 / 12


@dataclass
class StrategyCosts:
    """The measured facts about one strategy that its costs follow from."""

    name: str
    prompt_tokens: float  # mean per request
    completion_tokens: float
    train_seconds: float
    index_seconds: float
    knowledge_in_weights: bool
    accuracy: float
    family: Family = Family.PROMPTING  # which ownership costs apply
    pricing: dict | None = None  # how requests are priced (`pricing` below); None: the task's token prices
    stale_after_update: bool = False  # failed the freshness experiment: a knowledge change needs a retrain

    @property
    def retrains(self) -> bool:
        """Does a knowledge change cost it a retrain? When its knowledge is in the weights, or when the
        freshness experiment showed it does not follow a change of the documents."""
        return self.knowledge_in_weights or self.stale_after_update


@dataclass
class Economics:
    name: str
    cost_per_request: float
    setup_cost: float  # compute (measured training/indexing time) + one-time ownership
    maintenance_cost: float  # over the horizon: retrains/re-indexes + monthly ownership
    ownership_cost: float  # the part of set-up and maintenance that is people and infrastructure
    changes_over_horizon: float
    cost_per_change: float  # one knowledge change: a retrain (compute + people) and/or a re-index
    retrains: bool  # a knowledge change costs it a retrain
    fixed_cost: float  # setup + maintenance
    total_cost: float  # fixed + per-request over the horizon
    net_value: float | None
    roi: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def pricing(spec: GeneratorSpec, n_requests: int, generation_seconds: float) -> dict:
    """How a row's requests are priced, stated in results.json and the report.

    An endpoint with token prices is hosted; a local model with a price per hour is
    self-hosted: measured seconds per request at batch throughput times that price.
    Otherwise the task's economics token prices apply (they stay adjustable in `advisor roi`).
    """
    if not spec.is_endpoint and spec.hardware_price_per_hour is not None:
        return {"kind": PricingKind.SELF_HOSTED, "hardware_price_per_hour": spec.hardware_price_per_hour,
                "seconds_per_request": generation_seconds / max(1, n_requests)}
    if spec.input_price_per_mtok is not None:
        return {"kind": PricingKind.HOSTED if spec.is_endpoint else PricingKind.MODEL_TOKEN_PRICES,
                "input_price_per_mtok": spec.input_price_per_mtok, "output_price_per_mtok": spec.output_price_per_mtok}
    return {"kind": PricingKind.TASK_TOKEN_PRICES}


def endpoint_spend(spec: GeneratorSpec, prompt_tokens: int, completion_tokens: int) -> float:
    """Dollars an evaluation's requests cost on a priced endpoint (`--max-cost`); a local model's are 0 here."""
    if not spec.is_endpoint or spec.input_price_per_mtok is None:
        return 0.0
    return (prompt_tokens * spec.input_price_per_mtok + completion_tokens * (spec.output_price_per_mtok or 0)) / 1e6


def cost_per_request(c: StrategyCosts, e: EconomicsSpec) -> float:
    """Hosted rows pay per token; a self-hosted row pays its machine for the measured seconds per request
    (at batch throughput). Rows without their own prices use the task's token prices."""
    p = c.pricing or {}
    if p.get("kind") == PricingKind.SELF_HOSTED:
        return p["seconds_per_request"] * p["hardware_price_per_hour"] / 3600
    inp = p.get("input_price_per_mtok", e.input_price_per_mtok)
    out = p.get("output_price_per_mtok", e.output_price_per_mtok)
    return (c.prompt_tokens * inp + c.completion_tokens * out) / 1e6


def change_cost(c: StrategyCosts, e: EconomicsSpec) -> float:
    """What one knowledge change costs a row: a retrain (measured training time x hardware price + the
    people cost `retrain_usd`) when it retrains, a re-index (measured indexing time + `reindex_usd`) when
    it retrieves."""
    hour = e.hardware_price_per_hour / 3600
    family = Family(c.family)
    retrain = c.train_seconds * hour + e.retrain_usd() if c.retrains else 0.0
    reindex = c.index_seconds * hour + (e.reindex_usd() if family.retrieves else 0.0)
    return retrain + reindex


def economics(c: StrategyCosts, e: EconomicsSpec) -> Economics:
    hour = e.hardware_price_per_hour / 3600
    months = e.horizon_days / DAYS_PER_MONTH
    owned = [e.ownership[part] for part in Family(c.family).parts if part in e.ownership]
    own_setup = sum(o.setup_usd for o in owned)
    own_running = sum(o.monthly_usd for o in owned) * months
    setup = (c.train_seconds + c.index_seconds) * hour + own_setup
    changes = e.knowledge_changes_per_month * months
    per_change = change_cost(c, e)
    maintenance = changes * per_change + own_running
    per_request = cost_per_request(c, e)
    requests = e.requests_per_day * e.horizon_days
    total = setup + maintenance + per_request * requests
    net = roi = None
    if e.value_per_correct is not None or e.cost_per_error is not None:
        value = requests * (c.accuracy * (e.value_per_correct or 0) - (1 - c.accuracy) * (e.cost_per_error or 0))
        net = value - total
        roi = net / total if total > 0 else None
    people_per_change = (e.retrain_usd() if c.retrains else 0.0) + (e.reindex_usd() if Family(c.family).retrieves
                                                                     else 0.0)
    return Economics(c.name, per_request, setup, maintenance, own_setup + own_running + changes * people_per_change,
                     changes, per_change, c.retrains, setup + maintenance, total, net, roi)


def break_even_requests_per_day(s: Economics, base: Economics, horizon_days: float) -> float | None:
    """Daily volume above which `s` costs less than `base` over the horizon, or None if never.

    fixed_s + c_s * v * H = fixed_b + c_b * v * H  =>  v = (fixed_s - fixed_b) / ((c_b - c_s) * H)
    """
    saving = base.cost_per_request - s.cost_per_request
    extra = s.fixed_cost - base.fixed_cost
    if extra <= 0:
        return 0.0 if saving >= 0 else None  # cheaper to own at any volume, or never cheaper per request
    if saving <= 0:
        return None
    return extra / (saving * horizon_days)


def payback_days(s: Economics, base: Economics, requests_per_day: float, horizon_days: float) -> float | None:
    """The day cumulative savings first exceed the extra set-up plus the extra running costs; None: never
    within the horizon.

    Running costs (monthly ownership, retrains, re-indexing) accrue evenly over the horizon, so the net
    saving per day is the per-request saving times the volume minus the extra running cost per day; a row
    whose running costs eat its savings never pays back, however long one waits.
    """
    saving = (base.cost_per_request - s.cost_per_request) * requests_per_day
    running = (s.maintenance_cost - base.maintenance_cost) / horizon_days
    net = saving - running
    extra = s.setup_cost - base.setup_cost
    if extra <= 0:
        return 0.0 if net >= 0 else None
    if net <= 0:
        return None
    days = extra / net
    return days if days <= horizon_days else None


def volume_sweep(costs: list[StrategyCosts], e: EconomicsSpec, points: int = 13) -> dict:
    """Total cost over the horizon per strategy at volumes around the task's (log-spaced)."""
    lo, hi = max(1.0, e.requests_per_day / 1000), e.requests_per_day * 100
    volumes = [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]
    table = {}
    for c in costs:
        table[c.name] = [economics(c, e.model_copy(update={"requests_per_day": v})).total_cost for v in volumes]
    return {"requests_per_day": volumes, "total_cost": table}
