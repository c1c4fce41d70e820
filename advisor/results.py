"""The declared schema of results.json, and the only code that reads or writes it.

A run's measurements leave the process once, as results.json; the report, the
charts, `advisor roi` and `advisor serve` read them back. These pydantic models say
what that file holds, so every reader uses attributes instead of agreeing on dict
keys by convention, and a file that does not match (another schema version, a
missing or misspelled field) is refused with the field's path instead of showing
up later as a blank in a report.

The models are frozen and forbid unknown fields: a change to what the run writes
must change this module (and SCHEMA_VERSION when old files no longer fit), and
`advisor/results.schema.json`, the JSON Schema for people who read results.json
with their own tools, is generated from them (`python -m advisor.results`).

A field typed `X | None` without a default is always written, possibly as null;
one listed in a model's OMIT_IF_NONE is left out of the file when it is None
(the run writes such keys only when the thing exists: a GPU, an experiment, an
adapter).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from advisor.cache import atomic_write_text
from advisor.kinds import Family, PricingKind
from advisor.task import DecisionSpec, EconomicsSpec, ScoringSpec

SCHEMA_VERSION = 1  # bump when a file of the old shape no longer validates (or means something else)
RESULTS = "results.json"
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")


class ResultsError(Exception):
    """results.json is missing, unreadable, or not of the shape this advisor reads."""


class Record(BaseModel):
    """Base of every results model: frozen, unknown fields refused, NaN kept as NaN in JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")
    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler):
        data = handler(self)
        for name in self.OMIT_IF_NONE:
            if name in data and data[name] is None:
                del data[name]
        return data


# ---------------------------------------------------------------- statistics


class Estimate(Record):
    """A mean with its 95% interval over n items (stats.mean_ci: Wilson for pass/fail scores, bootstrap
    otherwise); NaN when n is 0."""

    mean: float
    low: float
    high: float
    n: int


class Comparison(Record):
    """Paired test of two strategies on the same eval items (stats.paired_compare, corrected by stats.compare_all)."""

    a: str
    b: str
    diff: float = Field(description="mean score of a minus mean score of b")
    low: float
    high: float
    p_value: float = Field(description="the test's own p-value, uncorrected")
    test: str
    significant: bool = Field(description="p_adjusted below 0.05 (Holm over all the run's pairs) and diff not 0")
    p_adjusted: float | None = Field(None, description="Holm-corrected over the run's pairs; null: an older file")
    better: str | None = Field(None, description="a or b by the sign of diff (the direction of the result); "
                                                 "null when the means are equal")
    n: int = Field(0, description="eval items compared")
    confidence: float | None = Field(None, description="level of [low, high]: simultaneous over the run's pairs "
                                                       "(Bonferroni, 1 - 0.05 / pairs); null: an older file (95%)")


# ---------------------------------------------------------------- one strategy


class Pricing(Record):
    """How a row's requests are priced (advisor.economics.pricing).

    self-hosted: the serving machine's price per hour times measured seconds per request;
    hosted / model token prices: the generator's own token prices; task token prices: `assumptions`.
    """

    OMIT_IF_NONE = ("hardware_price_per_hour", "seconds_per_request", "input_price_per_mtok", "output_price_per_mtok")
    kind: PricingKind
    hardware_price_per_hour: float | None = None
    seconds_per_request: float | None = None
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None

    @model_validator(mode="after")
    def _prices_for_kind(self):
        need = {PricingKind.SELF_HOSTED: ("hardware_price_per_hour", "seconds_per_request"),
                PricingKind.HOSTED: ("input_price_per_mtok", "output_price_per_mtok"),
                PricingKind.MODEL_TOKEN_PRICES: ("input_price_per_mtok", "output_price_per_mtok")}.get(self.kind, ())
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"pricing of kind {self.kind!r} needs {', '.join(missing)}")
        return self


class Consistency(Record):
    self_agreement: Estimate | None = Field(description="share of sampled answer pairs that agree; null: not probed")
    paraphrase_agreement: Estimate | None = Field(description="paraphrased inputs answered alike; null: no paraphrases")
    samples: int
    temperature: float
    items: int


class Tokens(Record):
    prompt_mean: float
    completion_mean: float
    prompt_max: int


class Latency(Record):
    """Single requests, unbatched and uncached; null percentiles when none were timed."""

    p50_seconds: float | None
    p95_seconds: float | None
    n: int


class Throughput(Record):
    generation_seconds: float
    batch_size: int
    batch_tokens: int | None = None  # absent before batches were bounded by cache tokens
    requests_per_second: float | None
    completion_tokens_per_second: float | None


class Index(Record):
    """The retrieval index a RAG row searched (strategies/rag.py)."""

    kind: Literal["flat", "hnsw"]
    chunks: int


class Epoch(Record):
    epoch: int
    train_loss: float
    val_loss: float | None


class Training(Record):
    """A LoRA adapter's training metrics (strategies/finetune.py train_lora); `reused`: taken from the cache."""

    train_seconds: float
    tokens: int
    tokens_per_second: float
    answer_tokens_per_epoch: int
    examples: int
    val_examples: int
    epochs_run: int
    best_epoch: int
    history: tuple[Epoch, ...]
    peak_memory_mb: float
    device: str
    trainable_parameters: int
    processes: int
    tokens_per_process: tuple[int, ...]
    reused: bool


class Setup(Record):
    """What preparing the strategy cost, and what it made (strategies.base.Setup and its details).

    A strategy's `setup.details` may hold only these keys: index, training, adapter, retrieval_aware, started_from.
    """

    OMIT_IF_NONE = ("index", "training", "adapter", "retrieval_aware", "started_from")
    train_seconds: float = Field(description="all training this row's adapter needs (a warm start counts its start)")
    index_seconds: float
    knowledge_in_weights: bool
    index: Index | None = None
    training: Training | None = None
    adapter: str | None = Field(None, description="the LoRA adapter's folder in the cache")
    retrieval_aware: Literal["separate", "warm-start", "off"] | None = Field(
        None, description="lora+rag: how its adapter learned to read passages (finetune.retrieval_aware)")
    started_from: str | None = Field(None, description="warm-start: the adapter this one continued training")


class Retrieval(Record):
    """How often the eval item's source document was among the k retrieved, and its mean reciprocal rank."""

    k: int
    n: int
    hit_at_k: float
    mrr: float


class Grounding(Record):
    """A retrieval row's grounding (advisor/scoring/grounding.py): was the gold source retrieved (context
    recall), and the share of answer sentences a retrieved passage supports (faithfulness, an embedding proxy)."""

    context_recall: Estimate | None = Field(description="null: no eval item names a gold source")
    faithfulness: Estimate | None
    threshold: float = Field(description="cosine similarity at which a passage supports a sentence")
    right_unsupported: tuple[str, ...] = Field(description="eval ids scored right whose gold source was not "
                                                           "retrieved or which no retrieved passage supports")


class JudgeRow(Record):
    """The LLM judge's verdicts on one row's answers (the items whose method includes `judge`)."""

    accuracy: Estimate = Field(description="share of the row's judged answers the judge called correct")
    counts: bool = Field(description="false: an uncalibrated judge, left out of accuracy and the verdict")


class StrategyEconomics(Record):
    """economics.Economics under `assumptions`, plus where the row pays off against the baseline."""

    name: str
    cost_per_request: float
    setup_cost: float
    maintenance_cost: float
    ownership_cost: float
    changes_over_horizon: float
    cost_per_change: float = Field(0.0, description="one knowledge change: a retrain (training time x hardware price "
                                                    "+ retrain_usd) and/or a re-index (+ reindex_usd)")
    retrains: bool = Field(False, description="a knowledge change costs it a retrain (knowledge in its weights, or "
                                              "it failed the freshness check)")
    fixed_cost: float
    total_cost: float
    net_value: float | None = Field(description="null unless value_per_correct or cost_per_error is stated")
    roi: float | None
    break_even_requests_per_day: float | None = Field(description="null for the baseline, or when never cheaper")
    payback_days: float | None = Field(description="the day savings first exceed the extra set-up and running "
                                                   "costs; null for the baseline, or when never within the horizon")


class SequentialDrop(Record):
    """The anytime-valid test that dropped a row (advisor/sequential.py)."""

    worse_than: str
    round: int
    items: int = Field(description="eval items the pair had both answered")
    clusters: int
    evidence: float = Field(description="the betting wealth that reached pairs / alpha")
    alpha: float
    pairs: int = Field(description="ordered pairs of rows alpha was split over (Bonferroni)")


class Evaluated(Record):
    """How far sequential evaluation took a row. Absent: the row answered every eval item (--budget full,
    or a file from before sequential evaluation)."""

    items: int = Field(description="eval items this row answered; its accuracy is over these")
    of: int = Field(description="eval items in the task")
    status: Literal["in", "dropped", "capped"] = Field(
        description="in: in contention when the run stopped; dropped: significantly worse than another row, "
                    "stopped answering (ruled out of the verdict); capped: stopped by --max-items or --max-cost")
    round: int = Field(description="the last round the row answered")
    reason: str
    drop: SequentialDrop | None = None


class MeasuredStrategy(Record):
    """One row of the comparison as measured, before run.analyze prices it (`economics` null until then)."""

    OMIT_IF_NONE = ("fields", "judge", "grounding", "evaluated")
    name: str
    description: str
    family: Family = Field(description="prompting, rag, finetune or finetune+rag (decides which ownership costs apply)")
    complexity: int
    model: str
    generator: str
    pricing: Pricing
    accuracy: Estimate
    by_tag: dict[str, Estimate]
    format_adherence: Estimate | None = Field(description="null when the task states no answer format")
    consistency: Consistency
    tokens: Tokens
    latency: Latency
    throughput: Throughput
    setup: Setup
    retrieval: Retrieval | None = Field(description="null: the row retrieves nothing, or no eval item names a source")
    dropped_examples: int
    economics: StrategyEconomics | None = None
    fields: dict[str, Estimate] | None = Field(None, description="json_fields: each field's share right")
    judge: JudgeRow | None = None
    grounding: Grounding | None = None
    evaluated: Evaluated | None = None


class StrategyResult(MeasuredStrategy):
    """One row of the comparison: what was measured for one strategy."""

    economics: StrategyEconomics


def completed(measured: Record, as_type: type[Record], **conclusions) -> Record:
    """A measured model as its stricter subclass (a row as StrategyResult, the run as Results), with what
    run.analyze concluded filled in; its other fields as they are."""
    return as_type(**{k: getattr(measured, k) for k in type(measured).model_fields} | conclusions)


def with_economics(row: MeasuredStrategy, economics: StrategyEconomics) -> StrategyResult:
    """The row with its economics, as results.json holds it."""
    return completed(row, StrategyResult, economics=economics)


# ---------------------------------------------------------------- per eval item


class JudgeVerdict(Record):
    """What the LLM judge said about one answer (advisor/scoring/judge.py)."""

    correct: bool | None = Field(description="null: the judge's reply had no verdict line (scored as wrong)")
    reason: str
    prompt: str = Field(description="the judge's prompt as sent")
    reply: str = Field(description="the judge's reply as written")


class Contradiction(Record):
    """Why a comparison of meaning whose cosine passed was refused (advisor/scoring/meaning.py)."""

    OMIT_IF_NONE = ("sentence",)
    comparer: str = Field(description="semantic, json_fields:<field> or faithfulness")
    rule: str = Field(description="quantities, negation, names or contrast")
    differ: tuple[str, ...] = Field(description="the quantities, denied words, names or contrasting words that differ")
    sentence: str | None = Field(None, description="faithfulness: the answer's sentence no passage supports")


class ItemScoring(Record):
    """How one answer was scored: each method's score, and what the substance scorers saw."""

    OMIT_IF_NONE = ("fields", "parsed", "similarity", "missing_quantities", "judge", "context_recall", "faithfulness",
                    "contradictions")
    parts: dict[str, float] = Field(description="method -> its score; the answer's score is the lowest that counts")
    fields: dict[str, bool] | None = Field(None, description="json_fields: each reference field right or not")
    parsed: bool | None = Field(None, description="json_fields: a JSON object was found in the reply")
    similarity: float | None = Field(None, description="semantic: best cosine similarity to a reference")
    missing_quantities: tuple[str, ...] | None = Field(None, description="semantic: a reference's quantities "
                                                                         "the answer does not state")
    judge: JudgeVerdict | None = None
    context_recall: bool | None = Field(None, description="retrieval rows: the gold source was retrieved")
    faithfulness: float | None = Field(None, description="retrieval rows: share of sentences a passage supports")
    contradictions: tuple[Contradiction, ...] | None = Field(None, description="comparisons close in meaning that a "
                                                             "rule refused (negation, names, ...), and why")


class AnswerResult(Record):
    OMIT_IF_NONE = ("scoring", "auto_score")
    text: str
    score: float = Field(description="the score that counts: a person's label when there is one (advisor review)")
    format_ok: bool | None
    sources: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    scoring: ItemScoring | None = None
    auto_score: float | None = Field(None, description="the automatic score, when a person's label replaced it")


class ExampleResult(Record):
    OMIT_IF_NONE = ("method", "counted", "cluster")
    id: str
    input: str
    expected: tuple[str, ...]
    tags: tuple[str, ...]
    source: str | None
    cluster: str | None = Field(None, description="the task's cluster of this item, if it names one (else items "
                                                  "sharing a source document are one cluster)")
    answers: dict[str, AnswerResult] = Field(description="strategy name -> its answer")
    method: str | None = Field(None, description="the scoring method of this item, e.g. `all of: format, json_fields`")
    counted: bool | None = Field(None, description="false: only an uncalibrated judge scored it; left out of accuracy "
                                                   "and the comparisons unless people labelled every row's answer")


# ---------------------------------------------------------------- the run


class DocumentMeta(Record):
    """What a document says about itself, for citations (front matter, <title>, PDF info, a JSONL row)."""

    OMIT_IF_NONE = ("title", "url", "updated")
    title: str | None = None
    url: str | None = None
    updated: str | None = None


class Split(Record):
    """How one data file was split into train and eval (when the task names no eval file)."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    from_: str | dict[str, str] = Field(alias="from", description="the data source that was split")
    eval_fraction: float
    seed: int
    stratified_by: str | None
    train: int
    eval: int
    eval_ids: tuple[str, ...]


class TaskSummary(Record):
    name: str
    description: str
    root: str
    files: dict[str, str] = Field(description="path in the task folder -> sha256")
    n_train: int
    n_eval: int
    n_documents: int
    document_meta: dict[str, DocumentMeta] = Field(default_factory=dict, description="document id -> its metadata")
    split: Split | None = None
    tags: tuple[str, ...]
    instructions_tokens: int


class ModelId(Record):
    OMIT_IF_NONE = ("dtype",)
    name: str
    fingerprint: str
    dtype: str | None = Field(None, description="a local generator's weight dtype (float32, bfloat16)")


class Hardware(Record):
    OMIT_IF_NONE = ("gpu",)
    machine: str
    cpu_cores: int | None
    torch_threads: int
    gpu: str | None = None


class BudgetInfo(Record):
    """`advisor run --budget`: the settings it filled (those the task file left unset) and what it left out."""

    name: str
    filled: dict[str, str | bool | int | float]  # the setting's value as the task file would write it
    left_out: str


class SequentialInfo(Record):
    """Sequential evaluation (advisor/evaluate.py evaluate_sequentially): the rounds the run answered."""

    rule: str
    round_items: int
    rounds: int
    items: int = Field(description="eval items answered by at least one row")
    of: int
    stopped: str = Field(description="why the rounds ended")
    max_items: int | None
    max_cost: float | None
    spent: float = Field(description="dollars spent on priced endpoints (local models count 0)")


class RunInfo(Record):
    OMIT_IF_NONE = ("budget", "sequential")
    seed: int
    started: str = Field(description="ISO 8601, UTC")
    seconds: float
    command: str
    models: dict[str, ModelId | None] = Field(
        description="`generator`, `generator NAME` for named generators, and `embedder` (null when none was used)")
    versions: dict[str, str]
    hardware: Hardware
    retries: int = Field(0, description="endpoint requests sent again after 408/429/5xx or a dropped connection")
    budget: BudgetInfo | None = None
    sequential: SequentialInfo | None = Field(None, description="absent: every row answered every eval item")


class Scoring(ScoringSpec):
    """The task's scoring section as the run used it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class JudgeCalibration(Record):
    """The LLM judge against people on the answers eval rows carry in `human_scores` (Cohen's kappa, 95% interval)."""

    generator: str = Field(description="the generator that judged")
    rubric: str
    n: int = Field(description="human-scored answers the judge also scored")
    kappa: float = Field(description="NaN when undefined (too few items, or a single label on one side)")
    low: float
    high: float
    agreement: float = Field(description="share of answers where judge and person gave the same verdict")
    unparsed: int = Field(description="judge replies without a verdict line (scored as wrong)")
    min_kappa: float
    min_items: int
    calibrated: bool = Field(description="n >= min_items and the interval's lower end >= min_kappa: the judge counts")


class Decision(DecisionSpec):
    """The task's decision section as the verdict used it (the non-inferiority margin)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Assumptions(EconomicsSpec):
    """The economics the costs and the recommendation were computed under (the task's, or `advisor roi`'s)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- experiments


class FreshnessResult(Record):
    before_update: Estimate
    after_update: Estimate
    answers: tuple[str, ...]
    scores: tuple[float, ...] = Field((), description="per changed fact after the update (the verdict's freshness "
                                                       "check); empty in older files")


class Freshness(Record):
    n: int
    changed_documents: tuple[str, ...]
    strategies: dict[str, FreshnessResult]


class AdapterProbe(Record):
    accuracy: Estimate
    drop: float = Field(description="base model's probe accuracy minus the adapter's")


class Forgetting(Record):
    n: int
    base: Estimate
    adapters: dict[str, AdapterProbe]


class CurvePoint(Record):
    examples: int
    accuracy: Estimate
    train_seconds: float


class DataCurve(Record):
    strategy: str
    points: tuple[CurvePoint, ...]


class Experiments(Record):
    """Each experiment is present only when it ran."""

    OMIT_IF_NONE = ("freshness", "forgetting", "data_curve")
    freshness: Freshness | None = None
    forgetting: Forgetting | None = None
    data_curve: DataCurve | None = None


# ---------------------------------------------------------------- economics and verdict


class CostSweep(Record):
    requests_per_day: tuple[float, ...]
    total_cost: dict[str, tuple[float, ...]] = Field(description="strategy -> total cost at each volume")


class EconomicsSummary(Record):
    baseline: str = Field(description="the prompting baseline break-even and payback are measured against")
    sweep: CostSweep


class Flip(Record):
    """Between these two values of `field` the recommendation changes from one strategy to another."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    field: Literal["requests_per_day", "knowledge_changes_per_month", "value_per_correct"]
    unit: str
    between: tuple[float, float]
    from_: str = Field(alias="from")
    to: str


class Evidence(Record):
    """What the sample can tell (advisor.recommend.Evidence): its size, the test family, power."""

    n_items: int
    min_items: int = Field(description="fewer eval items than this give no recommendation")
    tests: int = Field(description="paired tests in the family (Holm-corrected)")
    alpha: float
    power: float
    pair: tuple[str, str] | None = Field(description="the two rows the verdict turns on")
    gap: float | None = Field(description="their accuracy difference")
    disagreement: float | None = Field(description="share of eval items on which they differ")
    detectable_difference: float | None = Field(
        description="smallest accuracy gap this sample detects with `power` (McNemar exact, alpha / tests); null: none")
    items_needed: int | None = Field(description="eval items at which the rule's failing checks would pass with "
                                                 "`power`, if the items to come keep this sample's proportions")
    enough: bool
    why: str = Field(description="when not enough: why, in words")
    margin: float = Field(0.10, description="the non-inferiority margin (decision.margin)")
    test: str | None = Field(None, description="the paired test the comparisons and the power statement use")
    checks: tuple[NonInferiorityCheck, ...] = Field((), description="the pick against every other contender")
    clusters: int | None = Field(None, description="clusters the eval items fall into when some share one "
                                                   "(clustered intervals and tests); null: independent items")


class NonInferiorityCheck(Record):
    """Is this contender surely less than the margin more accurate than the pick?"""

    row: str
    gap: float = Field(description="its accuracy minus the pick's")
    bound: float = Field(description="upper end of the 95% interval of that gap")
    passes: bool = Field(description="bound below the margin")
    items_needed: int | None = Field(description="eval items at which this check passes with the stated power")


class FragilityItem(Record):
    """One item score the fragility search changed."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)
    id: str
    row: str
    from_: float = Field(alias="from")
    to: float


class Fragility(Record):
    """The fewest item scores that, changed, change the verdict or its status (advisor.recommend.fragility)."""

    count: int | None = Field(description="null: no change within the search's reach (or no per-item scores)")
    items: tuple[FragilityItem, ...] = ()
    changes: Literal["verdict", "status"] | None = Field(None, description="what the changes overturn")
    text: str


class FreshnessPower(Record):
    """What the freshness check can detect, and its correction over the rows."""

    n: int = Field(description="changed facts")
    tests: int = Field(description="rows tested against the one that follows the update best (Holm)")
    alpha: float = Field(description="the strictest level a row faces (Holm's first step)")
    min_split: int = Field(description="fewest facts, all one way, a significant split needs")
    detectable_difference: float | None
    flagged: tuple[str, ...]
    p_adjusted: dict[str, float]
    text: str


class ValueRow(Record):
    """One row in the money decision."""

    expected_value: float = Field(description="net value over the horizon at the measured accuracy ($)")
    p_best: float = Field(description="share of the posterior draws in which it has the highest net value")
    expected_loss: float = Field(description="E[best net value - its net value] over the draws ($)")


class SampleInformation(Record):
    items: int = Field(description="more eval items")
    value: float = Field(description="expected value of their information to this decision ($, preposterior "
                                     "simulation)")


class ValueDecision(Record):
    """The decision in money when the task prices quality (advisor.value); null when it does not."""

    method: str
    draws: int
    clusters: int | None = Field(description="clusters resampled whole; null: items resampled")
    value_per_correct: float | None
    cost_per_error: float | None
    requests: float = Field(description="requests over the horizon")
    pick: str = Field(description="the row of highest expected net value")
    tolerance: float = Field(description="the pick's expected loss may be at most this for a recommendation ($)")
    loss_tolerance: float = Field(0.01, description="the tolerance as a share of the money at stake "
                                                    "(economics.loss_tolerance; absent in older files: 0.01)")
    enough: bool
    rows: dict[str, ValueRow]
    evsi: tuple[SampleInformation, ...] = ()


class Recommendation(Record):
    strategy: str = Field(description="the recommended row; when status is 'not enough evidence', the most accurate "
                                      "row so far, which is not a recommendation")
    status: Literal["recommended", "not enough evidence"] = "recommended"
    baseline: str
    contenders: tuple[str, ...]
    ruled_out: dict[str, str] = Field(default_factory=dict, description="row -> why it was ruled out")
    evidence: Evidence | None = Field(None, description="null only in older files")
    reasons: tuple[str, ...]
    cautions: tuple[str, ...]
    sensitivity: tuple[Flip, ...]
    sensitivity_text: tuple[str, ...]
    fragility: Fragility | None = Field(None, description="null only in older files")
    freshness: FreshnessPower | None = Field(None, description="present when the freshness check ran")
    value: ValueDecision | None = Field(None, description="the decision in money; present when the task prices "
                                                          "quality (economics.value_per_correct / cost_per_error)")
    rule: str

    @property
    def recommended(self) -> str | None:
        """The recommended row, or None when there is not enough evidence for one."""
        return self.strategy if self.status == "recommended" else None


# ---------------------------------------------------------------- people's review (advisor review)


class ReviewLabel(Record):
    """A person's verdict on one row's answer to one eval item (advisor/labels.py)."""

    id: str
    row: str
    label: Literal["right", "wrong", "skip"]
    reviewer: str = ""
    note: str = ""
    sample: Literal["deciding", "random"] = Field("deciding", description="random: part of a random sample of items "
                                                                          "(`advisor review --random`), used by PPI")


class VerdictState(Record):
    strategy: str
    status: Literal["recommended", "not enough evidence"]


class MethodAgreement(Record):
    """An automatic scoring method against the people on the labelled answers."""

    method: str = Field(description="`automatic score` (the score as it counted) or a scoring method of the items")
    n: int
    agreement: float = Field(description="share of labelled answers where method and person agree")
    kappa: float = Field(description="Cohen's kappa; NaN when undefined (one side gives a single label)")
    low: float = Field(description="95% interval: the wider of a bootstrap and the Wilson interval of the agreement "
                                   "mapped to kappa (not degenerate at perfect agreement)")
    high: float


class Review(Record):
    """People's labels on the run's answers, which replace those answers' automatic scores."""

    OMIT_IF_NONE = ("ppi",)
    labels: tuple[ReviewLabel, ...]
    items: int = Field(description="eval items with at least one answer labelled right or wrong")
    answers: int = Field(description="answers labelled right or wrong")
    changed: int = Field(description="answers whose score the label changed")
    before: VerdictState = Field(description="the verdict on the automatic scores alone")
    agreement: tuple[MethodAgreement, ...]
    ppi: dict[str, Estimate] | None = Field(None, description="prediction-powered accuracy per row, from the labels "
                                                              "on a random sample (Angelopoulos et al. 2023)")


def _file_has_version(schema: dict) -> None:
    """In the file schema_version is required (load_results refuses a file without it); the run may leave it out."""
    schema["required"] = ["schema_version", *schema.get("required", [])]


class Measured(Record):
    """What `advisor run` measured, before run.analyze concludes: `assumptions`, `economics`, `recommendation`
    and each row's `economics` are null until then. Never written: results.json holds a Results, which is
    also a Measured (run.analyze re-decides a stored run the same way)."""

    OMIT_IF_NONE = ("judge", "review")
    schema_version: int = Field(SCHEMA_VERSION, json_schema_extra={"const": SCHEMA_VERSION},
                                description="the shape of this file; a reader refuses a version it does not know")
    advisor_version: str
    task: TaskSummary
    run: RunInfo
    scoring: Scoring
    strategies: tuple[MeasuredStrategy, ...]
    comparisons: tuple[Comparison, ...]
    examples: tuple[ExampleResult, ...]
    experiments: Experiments
    assumptions: Assumptions | None = None
    economics: EconomicsSummary | None = None
    recommendation: Recommendation | None = None
    decision: Decision = Field(default_factory=Decision)
    judge: JudgeCalibration | None = Field(None, description="present when the task scores with an LLM judge")
    review: Review | None = Field(None, description="present when people labelled answers (advisor review)")

    @field_validator("schema_version")
    @classmethod
    def _this_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema version {v}, this advisor reads version {SCHEMA_VERSION}")
        return v

    def strategy(self, name: str) -> MeasuredStrategy | None:
        return next((s for s in self.strategies if s.name == name), None)


class Results(Measured):
    """Everything `advisor run` measured and concluded: the content of results.json."""

    model_config = ConfigDict(json_schema_extra=_file_has_version)
    strategies: tuple[StrategyResult, ...]
    assumptions: Assumptions
    economics: EconomicsSummary
    recommendation: Recommendation


def concluded(measured: Measured, strategies: tuple[StrategyResult, ...], assumptions: Assumptions,
              economics: EconomicsSummary, recommendation: Recommendation) -> Results:
    """The measured run with what run.analyze concluded from it (its other fields as they are)."""
    return completed(measured, Results, strategies=strategies, assumptions=assumptions, economics=economics,
                     recommendation=recommendation)


# ---------------------------------------------------------------- reading and writing


def to_json(results: Results) -> str:
    """The text of results.json: indented, floats as Python writes them, NaN as NaN."""
    return json.dumps(results.model_dump(mode="json"), indent=1)


def write_results(results: Results, out_dir: Path) -> Path:
    """Write out_dir/results.json atomically (a killed write leaves the old file or none)."""
    path = Path(out_dir) / RESULTS
    atomic_write_text(path, to_json(results))
    return path


def load_results(path: Path | str) -> Results:
    """Read a run folder's results.json (or the file itself); every problem is a ResultsError saying what to do."""
    path = Path(path)
    file = path / RESULTS if path.is_dir() else path
    if not file.exists():
        raise ResultsError(f"{file}: no results.json here; run `advisor run TASK --out DIR` first")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ResultsError(f"{file}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{file}: cannot read: {e}") from None
    if not isinstance(raw, dict):
        raise ResultsError(f"{file}: expected a JSON object with the run's results, found {type(raw).__name__}")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        wrote = raw.get("advisor_version")
        which = f"advisor {wrote}" if isinstance(wrote, str) else "the advisor version that wrote it"
        has = "no schema version" if version is None else f"schema version {version!r}"
        raise ResultsError(f"{file}: results.json has {has}, this advisor reads version {SCHEMA_VERSION}: "
                           f"re-run `advisor run` or use {which}")
    try:
        return Results.model_validate(raw)
    except ValidationError as e:
        raise ResultsError(f"{file}: {describe(e)}") from None


def describe(e: ValidationError) -> str:
    """The first problem of a validation error as `field.path: what is wrong`."""
    errors = e.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"field {where}: {msg}{more}"


def examples_csv(results: Results) -> str:
    """One line per eval item and strategy, for a spreadsheet."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "strategy", "input", "expected", "tags", "answer", "score", "format_ok", "sources",
                "prompt_tokens", "completion_tokens"])
    for ex in results.examples:
        for name, a in ex.answers.items():
            w.writerow([ex.id, name, ex.input, " | ".join(ex.expected), " ".join(ex.tags), a.text, a.score,
                        a.format_ok, " ".join(a.sources), a.prompt_tokens, a.completion_tokens])
    return buf.getvalue()


def json_schema() -> str:
    """The JSON Schema of results.json, as committed in advisor/results.schema.json."""
    return json.dumps(Results.model_json_schema(), indent=1) + "\n"


def write_json_schema(path: Path = SCHEMA_FILE) -> None:
    atomic_write_text(path, json_schema())


if __name__ == "__main__":  # python -m advisor.results: regenerate the committed schema after changing a model
    write_json_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE)
    print(f"wrote {sys.argv[1] if len(sys.argv) > 1 else SCHEMA_FILE}")
