"""The task definition: one YAML file validated at the edge, plain objects inside.

A task folder holds `task.yaml` plus the data it names (train/eval as JSONL, CSV,
TSV, Parquet or a `datasets` folder, read by advisor/loaders.py; documents;
instructions). Validation goes on past the first mistake: every problem is
collected with its file, line or field, what is wrong and what to do, and all of
them are raised together as one TaskError, so fixing a task takes one pass.
Nothing here executes task content (safe YAML only, duplicate keys refused).
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advisor import loaders, plugins
from advisor.cache import hash_file, hash_json

TASK_FILE = "task.yaml"
DOC_SUFFIXES = set(loaders.DOCUMENT_LOADERS)
BUILTIN_METHODS = ("exact", "contains", "f1", "choice", "regex", "format", "json_fields", "semantic",
                   "judge")  # more come from plug-ins (advisor.plugins)
SEED_LIMIT = 2**32  # numpy's RandomState takes seeds below this; torch.manual_seed takes them too
DEFAULT_EVAL_FRACTION = 0.2


@dataclass(frozen=True)
class Problem:
    """One mistake in a task: the file, where in it (line and/or field), what is wrong, what to do."""

    file: str
    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}: {self.where}: {self.message}" if self.where else f"{self.file}: {self.message}"
        return f"{text} ({self.fix})" if self.fix else text


class TaskError(Exception):
    """A bad task: every problem found, each naming file, line or field, and what is wrong."""

    def __init__(self, problems: list[Problem]):
        assert problems, "a TaskError carries at least one problem"
        self.problems = list(problems)
        first = self.problems[0]
        self.file, self.where, self.message = first.file, first.where, first.message
        lines = [str(p) for p in self.problems]
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(lines))

    @classmethod
    def one(cls, file: Path | str, where: str, message: str, fix: str = "") -> "TaskError":
        return cls([Problem(str(file), where, message, fix)])


# ---------------------------------------------------------------- schema (edge)


class _Strict(BaseModel):
    # No infinities or NaN anywhere: a price of .inf would make every cost infinite.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AllOf(_Strict):
    """Several methods at once (`all_of: [format, json_fields]`): an answer scores its weakest part."""

    all_of: list[str] = Field(min_length=2)


Method = str | AllOf


def method_names(method: Method) -> list[str]:
    """The scoring methods a method entry names (one, or each of an `all_of`)."""
    return list(method.all_of) if isinstance(method, AllOf) else [method]


def describe_method(method: Method) -> str:
    return "all of: " + ", ".join(method.all_of) if isinstance(method, AllOf) else method


class JudgeSpec(_Strict):
    """An LLM judge: a rubric from the task, a generator the task names, a fixed verdict format."""

    rubric: str = Field(min_length=1, description="what a correct answer must do, in the judge's prompt")
    generator: str = Field("default", description="`default` (models.generator) or a name in models.generators")
    max_new_tokens: int = Field(64, ge=8, le=1024)
    min_kappa: float = Field(0.6, ge=-1, le=1, description="the judge counts when the lower end of its kappa's "
                                                           "95% interval against human scores reaches this")
    min_calibration_items: int = Field(10, ge=10, description="human-scored answers needed before the judge counts "
                                       "(at least 10: fewer say little about agreement)")


class ScoringSpec(_Strict):
    method: Method = "contains"
    by_tag: dict[str, Method] = Field(default_factory=dict)
    regex: str | None = None
    format: str | None = Field(None, description="regex every well-formed answer matches; a `(?P<content>...)` "
                                                 "group marks what the reply says (semantic scoring compares it)")
    multiline: bool = Field(False, description="answers may span lines: `.` in regex and format crosses line breaks")
    f1_threshold: float = Field(0.5, ge=0, le=1)
    semantic_threshold: float = Field(0.7, ge=-1, le=1, description="cosine similarity at which two texts say "
                                                                    "the same thing (semantic, json free text, agreement)")
    faithfulness_threshold: float = Field(0.5, ge=-1, le=1, description="cosine similarity at which a retrieved "
                                                                        "passage supports an answer sentence")
    free_text_fields: list[str] = Field(default_factory=list, description="json_fields: fields compared by meaning, "
                                                                          "not exactly")
    judge: JudgeSpec | None = None

    def method_for(self, tags) -> Method:
        """The method that scores an item with these tags: the first tag in `by_tag`, else `method`."""
        for tag in tags:
            if tag in self.by_tag:
                return self.by_tag[tag]
        return self.method

    def uses(self, name: str) -> bool:
        """Whether any item may be scored with this method (directly or in an `all_of`)."""
        return any(name in method_names(m) for m in [self.method, *self.by_tag.values()])


DEFAULT_RETRAIN_USD = 200.0  # people time per retrain: ~2 hours of an engineer at $100/hour (see README)
DEFAULT_REINDEX_USD = 0.0  # the documents are edited for every approach alike; re-indexing itself is measured compute


class OwnershipSpec(_Strict):
    """People and infrastructure costs that token and hardware prices miss (USD)."""

    setup_usd: float = Field(0, ge=0, description="one-time: data pipeline, evals, deployment of this approach")
    monthly_usd: float = Field(0, ge=0, description="running it: hosting a custom model or a vector store, monitoring")
    retrain_usd: float | None = Field(None, ge=0, description=(
        "finetune only: people time per retrain after a knowledge change (turn the change into training "
        f"examples, check the eval, redeploy); unset: {DEFAULT_RETRAIN_USD:g}"))
    reindex_usd: float | None = Field(None, ge=0, description=(
        f"rag only: people time per re-index after a knowledge change; unset: {DEFAULT_REINDEX_USD:g}"))


DEFAULT_LOSS_TOLERANCE = 0.01  # with prices, the pick's expected loss may be one accuracy point's worth


class EconomicsSpec(_Strict):
    requests_per_day: float = Field(1000, gt=0)
    horizon_days: float = Field(365, gt=0)
    input_price_per_mtok: float = Field(0.5, ge=0)
    output_price_per_mtok: float = Field(1.5, ge=0)
    hardware_price_per_hour: float = Field(2.0, ge=0)
    knowledge_changes_per_month: float = Field(0, ge=0)
    value_per_correct: float | None = Field(None, ge=0)
    cost_per_error: float | None = Field(None, ge=0)
    loss_tolerance: float = Field(DEFAULT_LOSS_TOLERANCE, gt=0, lt=1, description=(
        "with prices: the pick is recommended (and sequential evaluation stops) when its expected loss against the "
        "best-value row is at most this share of the money at stake (requests x (value_per_correct + "
        "cost_per_error)); 0.01: one accuracy point's worth. Lower it where any wrong pick matters"))
    # Keyed by family; a combination (finetune+rag) pays for each of its parts.
    ownership: dict[Literal["prompting", "rag", "finetune"], OwnershipSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _per_change_costs_where_they_apply(self):
        for part, o in self.ownership.items():
            for name, where in (("retrain_usd", "finetune"), ("reindex_usd", "rag")):
                if getattr(o, name) is not None and part != where:
                    raise ValueError(f"ownership.{part}.{name}: {name} is a cost of `{where}` only; "
                                     f"move it under ownership.{where}")
        return self

    def retrain_usd(self) -> float:
        """People cost of one retrain (ownership.finetune.retrain_usd, or the documented default)."""
        o = self.ownership.get("finetune")
        return DEFAULT_RETRAIN_USD if o is None or o.retrain_usd is None else o.retrain_usd

    def reindex_usd(self) -> float:
        o = self.ownership.get("rag")
        return DEFAULT_REINDEX_USD if o is None or o.reindex_usd is None else o.reindex_usd


DEFAULT_MARGIN = 0.10  # the recommended row must be shown at most 10 points less accurate than any other contender


class DecisionSpec(_Strict):
    """How the verdict weighs quality (README: How the verdict is reached)."""

    margin: float = Field(DEFAULT_MARGIN, gt=0, lt=1, description=(
        "non-inferiority margin (a share: 0.10 = 10 points): the recommended row must be shown, by the upper end "
        "of the 95% interval of the gap, less than this much less accurate than every other contender"))


class GeneratorSpec(_Strict):
    """One named generator: a local HF model (`hf`) or an OpenAI-compatible endpoint (`endpoint`)."""

    hf: str | None = Field(None, description="embedded, a Hugging Face model id, or a local folder")
    endpoint: str | None = Field(None, description="base URL of an OpenAI-compatible API, e.g. http://host:8000/v1")
    model: str | None = Field(None, description="the model name the endpoint expects")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    input_price_per_mtok: float | None = Field(None, ge=0)
    output_price_per_mtok: float | None = Field(None, ge=0)
    hardware_price_per_hour: float | None = Field(None, ge=0, description="self-hosted: what the serving machine costs")
    max_concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(60, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    context_window: int = Field(8192, ge=64)

    @property
    def is_endpoint(self) -> bool:
        return self.endpoint is not None


class ModelsSpec(_Strict):
    generator: str = "embedded"  # default for every strategy: embedded, an HF id or a local folder
    embedder: str = "embedded"
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="local models' weights: auto = bfloat16 on CUDA or a CPU with native bf16 (AMX / "
                            "AVX512-BF16), else float32")
    generators: dict[str, GeneratorSpec] = Field(default_factory=dict)
    use: dict[str, str] = Field(default_factory=dict, description="strategy name -> a name in `generators`")

    def for_strategy(self, strategy: str) -> tuple[str, GeneratorSpec]:
        """(generator name, its spec) that a strategy runs on; `default` is `generator`."""
        name = self.use.get(strategy, "default")
        if name in self.generators:
            return name, self.generators[name]
        return "default", GeneratorSpec(hf=self.generator)


class GenerationSpec(_Strict):
    max_new_tokens: int = Field(64, ge=1, le=4096)
    batch_size: int = Field(64, ge=1, le=512, description="most prompts a local model answers in one batch")
    # A decode step reads every weight once per batch, so short prompts go fastest in large batches; the
    # KV cache grows with rows x width, so long prompts get fewer rows (16 of ~1,000 tokens, 64 of ~200).
    batch_tokens: int = Field(16384, ge=1, description="most KV-cache tokens in one batch: rows x (longest "
                                                        "prompt + max_new_tokens)")


class PromptingSpec(_Strict):
    few_shot_k: int = Field(3, ge=0, le=64)


class RagSpec(_Strict):
    chunk_tokens: int = Field(160, ge=16, le=4096)
    chunk_overlap: int = Field(32, ge=0)
    top_k: int = Field(2, ge=1, le=50)
    approximate_above: int = Field(20000, ge=1, description="chunks above which an HNSW index replaces exact search")


# Old advisor names -> the peft / transformers names users know; the old ones still load, with a notice.
# transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio), so it is renamed too.
FINETUNE_RENAMED = {"alpha": "lora_alpha", "dropout": "lora_dropout", "epochs": "num_train_epochs",
                    "batch_size": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps",
                    "warmup_ratio": "warmup_steps"}
LORA_CONFIG_NAMES = ("r", "lora_alpha", "lora_dropout", "target_modules")  # peft.LoraConfig
TRAINING_ARGUMENT_NAMES = ("learning_rate", "num_train_epochs", "per_device_train_batch_size",
                           "gradient_accumulation_steps", "warmup_steps", "weight_decay")  # transformers.TrainingArguments


class FinetuneSpec(_Strict):
    """LoRA settings under peft's LoraConfig names, training under transformers' TrainingArguments names."""

    r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)
    num_train_epochs: int = Field(2, ge=1, le=100)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    per_device_train_batch_size: int = Field(8, ge=1, le=1024)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    warmup_steps: float = Field(0.1, ge=0, description="linear warm-up: below 1 a share of the optimizer steps, "
                                                       "else a whole number of steps (as in transformers 5)")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay")
    val_fraction: float = Field(0.1, ge=0, lt=0.9)
    patience: int = Field(1, ge=0)
    max_length: int = Field(512, ge=16)
    # Memory, not results (float rounding aside): a batch is computed in pieces of at most this many padded
    # tokens and their gradients summed (activation memory grows ~1.6 MB per token for the default model).
    micro_batch_tokens: int = Field(512, ge=16, description="padded tokens per forward/backward piece of a batch")
    # How lora+rag's adapter learns to read retrieved passages (RAFT: trained with them in its prompts, as it
    # is used). separate: its own adapter, from scratch, every epoch; warm-start: the plain adapter trained one
    # more epoch with passages; off: the plain adapter as is. Unset, `advisor run --budget` chooses.
    retrieval_aware: Literal["separate", "warm-start", "off"] = Field(
        "separate", description="lora+rag's adapter: separate (own adapter, trained with passages), warm-start "
                                "(the lora adapter + one epoch with passages) or off (the lora adapter)")

    @field_validator("retrieval_aware", mode="before")
    @classmethod
    def _retrieval_aware_bool(cls, v):
        """The earlier yes/no form: true was a separate adapter, false the plain one."""
        return {True: "separate", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("warmup_steps")
    @classmethod
    def _ratio_or_steps(cls, v: float) -> float:
        if v >= 1 and not float(v).is_integer():
            raise ValueError("below 1 it is a share of the steps; from 1 up it counts steps, so a whole number")
        return v

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps out of `total_steps` (at least 1, so the first step does not divide by zero)."""
        return max(1, int(total_steps * self.warmup_steps) if self.warmup_steps < 1 else int(self.warmup_steps))

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, raw):
        """`epochs: 2` still means num_train_epochs (load_task says it is deprecated); both at once is an error."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for old, new in FINETUNE_RENAMED.items():
            if old in raw:
                if new in raw:
                    raise ValueError(f"give {new} or its old name {old}, not both")
                raw[new] = raw.pop(old)
        return raw


class ConsistencySpec(_Strict):
    samples: int = Field(3, ge=0, le=50, description="answers compared per probed item: the greedy answer and "
                                                      "samples - 1 drawn at `temperature`")
    temperature: float = Field(0.7, gt=0, le=5)
    items: int = Field(8, ge=0)


class LatencySpec(_Strict):
    requests: int = Field(2, ge=0, le=100)


class DataSource(_Strict):
    """Where examples come from: a file or save_to_disk folder in the task (`path`), or a Hub dataset id (`hf`)."""

    path: str | None = None
    hf: str | None = Field(None, min_length=1, description="a Hugging Face dataset id, read from the local cache")
    split: str | None = Field(None, min_length=1, description="which split (a Hub dataset or a saved DatasetDict)")
    config: str | None = Field(None, min_length=1, description="a Hub dataset's configuration name")
    revision: str | None = Field(None, min_length=1, description="a Hub dataset's tag, branch or commit to read "
                                                                   "(pins the version; the newest without it)")


class ColumnsSpec(_Strict):
    """Which column of your data holds each field (`input: question`); unnamed columns are ignored."""

    id: str | None = None
    input: str | None = None
    output: str | None = None
    answers: str | None = None
    choices: str | None = None
    tags: str | None = None
    source: str | None = None
    cluster: str | None = None
    paraphrases: str | None = None
    messages: str | None = None


class TaskSpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    instructions: str | None = None
    instructions_file: str | None = None
    train: str | DataSource
    eval: str | DataSource | None = None
    eval_fraction: float | None = Field(None, gt=0, lt=1, description="when only `train` is given: the share held out")
    columns: ColumnsSpec | None = None
    documents: list[str] = Field(default_factory=list)
    updated_documents: list[str] = Field(default_factory=list)
    eval_updated: str | DataSource | None = None
    strategies: list[str] | None = Field(None, min_length=1)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    economics: EconomicsSpec = Field(default_factory=EconomicsSpec)
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    prompting: PromptingSpec = Field(default_factory=PromptingSpec)
    rag: RagSpec = Field(default_factory=RagSpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    consistency: ConsistencySpec = Field(default_factory=ConsistencySpec)
    latency: LatencySpec = Field(default_factory=LatencySpec)

    @field_validator("documents", "updated_documents", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class HumanScore(BaseModel):
    """An answer to an eval item that a person scored: what calibrates an LLM judge."""

    model_config = ConfigDict(extra="forbid")
    answer: str = Field(min_length=1)
    score: float = Field(ge=0, le=1, description="1 right, 0 wrong (at least 0.5 counts as right)")


class ExampleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    input: str = Field(min_length=1)
    output: str | None = None
    answers: list[str] = Field(default_factory=list)
    choices: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    source: str | None = None
    cluster: str | None = Field(None, min_length=1, description=(
        "items that are not independent (one source document, paraphrases of one question) share a cluster; "
        "unset: the item's `source`, else the item alone"))
    paraphrases: list[str] = Field(default_factory=list)
    human_scores: list[HumanScore] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, v):
        return str(v) if isinstance(v, int) else v


# ---------------------------------------------------------- plain objects inside


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    output: str | None
    answers: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str | None = None
    paraphrases: tuple[str, ...] = ()
    human_scores: tuple[tuple[str, float], ...] = ()  # (answer, score in [0, 1]) a person gave
    cluster: str | None = None  # the task's `cluster` field as given (cluster_of applies the default)

    @property
    def references(self) -> tuple[str, ...]:
        """What a correct answer may say: explicit answers, else the output."""
        return self.answers or ((self.output,) if self.output else ())


def cluster_of(cluster: str | None, source: str | None, item_id: str) -> str:
    """The cluster the statistics group an eval item in: its `cluster`, else its `source` document (items
    answered from one document succeed or fail together), else the item alone."""
    return f"cluster:{cluster}" if cluster else f"source:{source}" if source else f"item:{item_id}"


@dataclass(frozen=True)
class Document:
    id: str  # path relative to its documents root, or the JSONL row id
    text: str
    title: str | None = None  # metadata for citations: from front matter, <title>, PDF info or the JSONL row
    url: str | None = None
    updated: str | None = None


@dataclass
class Task:
    name: str
    description: str
    root: Path
    instructions: str
    train: list[Example]
    eval: list[Example]
    documents: list[Document]
    updated_documents: list[Document]
    eval_updated: list[Example]
    spec: TaskSpec
    # relative path -> sha256; a Hub dataset as _hub_key() -> sha256 of its rows, so a changed dataset shows
    files: dict[str, str] = field(default_factory=dict)
    # How eval was held out of a single data file (None when eval is its own file); results record it.
    split: dict | None = None
    notices: list[str] = field(default_factory=list)  # deprecations and other things worth saying, not errors


# ---------------------------------------------------------------------- loading


class _Yaml(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (no silent last-wins) and remembers each key's line.

    `lines` maps a field path such as ("economics", "requests_per_day") to its 1-based line,
    so a schema error can say where in the file it is; `duplicates` holds (path, line) pairs.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.lines: dict[tuple, int] = {}
        self.duplicates: list[tuple[tuple, int]] = []

    def walk(self, node: yaml.Node, path: tuple = ()) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key == "<<":  # a merge key: its keys are checked where they are written
                    continue
                here = path + (key,)
                if key in seen:
                    self.duplicates.append((here, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines.setdefault(here, key_node.start_mark.line + 1)
                self.walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines.setdefault(path + (i,), item.start_mark.line + 1)
                self.walk(item, path + (i,))


def _parse_yaml(text: str, file: Path) -> tuple[object, _Yaml]:
    loader = None
    try:
        loader = _Yaml(text)  # the reader checks for unprintable characters here already
        node = loader.get_single_node()
        if node is not None:
            loader.walk(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaskError.one(file, where, f"invalid YAML: {getattr(e, 'problem', None) or e}",
                            "check indentation and quoting at that line" if mark else "") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, loader


class _Collector:
    """Problems found so far; `where` turns a field path into 'line N, field a.b' using the YAML positions."""

    def __init__(self, file: Path, lines: dict[tuple, int]):
        self.file, self.lines, self.items = file, lines, []

    def where(self, path: tuple | str) -> str:
        path = tuple(path.split(".")) if isinstance(path, str) else tuple(path)
        dotted = ".".join(str(p) for p in path) or "(top level)"
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"line {self.lines[path[:n]]}, field {dotted}"
        return f"field {dotted}"

    def field(self, path: tuple | str, message: str, fix: str = "") -> None:
        self.items.append(Problem(str(self.file), self.where(path), message, fix))

    def add(self, problem: Problem) -> None:
        """Record a problem; one in task.yaml named by field only gets the field's line."""
        if problem.file == str(self.file) and problem.where.startswith("field "):
            path = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", problem.where[6:]))
            problem = dataclasses.replace(problem, where=self.where(path))
        self.items.append(problem)

    def extend(self, e: TaskError | loaders.LoadError) -> None:
        for p in e.problems if isinstance(e, TaskError) else [Problem(e.path, e.where, e.message, e.fix)]:
            self.add(p)


# pydantic puts the union member it tried into the location (train.str, train.DataSource.path); users never see those.
_UNION_PARTS = {"str", "int", "float", "bool", "DataSource", "ColumnsSpec", "list[str]", "AllOf"}


def _schema_problems(e: ValidationError, out: _Collector, fix_prefix: tuple = ()) -> None:
    """Every pydantic error as a problem at its YAML line; a union's alternatives become one message."""
    grouped: dict[tuple, list[str]] = {}
    locs = [fix_prefix + tuple(p for p in err["loc"] if p not in _UNION_PARTS) for err in e.errors()]
    for err in e.errors():
        loc = fix_prefix + tuple(p for p in err["loc"] if p not in _UNION_PARTS)
        if err["type"] == "string_type" and any(o[:len(loc)] == loc and len(o) > len(loc) for o in locs):
            continue  # a mapping given where a name or a mapping may go: the mapping's own problem says more
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = _unknown_field_message(loc)
        elif err["type"] == "finite_number":
            msg = "must be a finite number (not .inf or .nan)"
        if msg not in grouped.setdefault(loc, []):
            grouped[loc].append(msg)
    for loc, msgs in grouped.items():
        fix = "see `advisor init` for every field" if any("unknown field" in m for m in msgs) else FIXES.get(loc, "")
        out.field(loc, " or ".join(msgs), fix)


# What to do, for the fields whose schema message alone does not say it.
DATA_SOURCE_FIX = ("a path in the task folder, or a mapping {path: ..., split: ...} / "
                   "{hf: ..., split: ..., config: ..., revision: ...}")
FIXES = {
    ("seed",): f"a seed is a whole number from 0 to {SEED_LIMIT - 1} (what NumPy and torch accept)",
    ("strategies",): "name at least one strategy, or leave `strategies` out to run every registered one",
    ("train",): DATA_SOURCE_FIX,
    ("eval",): DATA_SOURCE_FIX,
}


def _unknown_field_message(loc: tuple) -> str:
    if len(loc) == 2 and loc[0] == "finetune":
        known = _library_names()
        if loc[1] in known:
            return (f"unknown field: {loc[1]} is a {known[loc[1]]} setting advisor does not use "
                    f"(it uses {', '.join(LORA_CONFIG_NAMES + TRAINING_ARGUMENT_NAMES)})")
    return "unknown field (check the spelling)"


def _library_names() -> dict[str, str]:
    """Parameter names of the installed peft.LoraConfig and transformers.TrainingArguments (imported only here)."""
    import dataclasses

    from peft import LoraConfig
    from transformers import TrainingArguments

    names = {f.name: "transformers TrainingArguments" for f in dataclasses.fields(TrainingArguments)}
    return names | {f.name: "peft LoraConfig" for f in dataclasses.fields(LoraConfig)}


def _inside(root: Path, rel: str, file: Path, where: str) -> Path:
    if "\x00" in rel:  # the OS cannot take it; say so instead of a ValueError from deep in pathlib
        raise TaskError.one(file, where, f"path {rel!r} contains a NUL character")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise TaskError.one(file, where, f"path {rel!r} points outside the task folder",
                            "copy the data into the task folder and name it relative to task.yaml")
    if not path.exists():
        raise TaskError.one(file, where, f"{rel!r} does not exist")
    return path


def _read_text(path: Path) -> str:
    try:
        return loaders.read_text(path)
    except loaders.LoadError as e:
        raise TaskError([Problem(e.path, e.where, e.message, e.fix)]) from None


MAX_ROW_PROBLEMS = 20  # per file: enough to see the pattern, not a screenful for a file with a wrong mapping


def examples_from_rows(rows: loaders.Rows, label: str, id_prefix: str, need_output: bool,
                       columns: dict[str, str] | None = None) -> tuple[list[Example], list[Problem], list[str]]:
    """Validated examples, the problems of every bad row, and the system messages of chat rows."""
    examples: list[Example] = []
    problems: list[Problem] = []
    systems: list[str] = []
    seen: set[str] = set()
    if columns:
        names = list(loaders.iter_columns(rows))
        required = ("messages",) if "messages" in columns else ("input", "output") if need_output else ("input",)
        columns, missing = loaders.resolve_columns(columns, names, required)
        if missing:
            return [], [Problem(label, "", f"has no column {', '.join(map(repr, missing))} named in `columns:`",
                                f"its columns are: {', '.join(names) or 'none'}")], []
    for where, raw in rows:
        if len(problems) >= MAX_ROW_PROBLEMS:
            problems.append(Problem(label, "", "more rows have problems; fix the ones above first"))
            break
        try:
            fields, system = loaders.to_fields(raw, columns or {})
        except ValueError as e:
            problems.append(Problem(label, where, str(e)))
            continue
        try:
            spec = ExampleSpec.model_validate(fields)
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
                fix = "name the fields you use in `columns:` (others are then ignored)" \
                    if err["type"] == "extra_forbidden" else ""
                problems.append(Problem(label, f"{where}, field {loc}", msg, fix))
            continue
        if system:
            systems.append(system)
        if need_output and not spec.output:
            problems.append(Problem(label, f"{where}, field output", "training examples need an output"))
            continue
        if not need_output and not (spec.output or spec.answers):
            problems.append(Problem(label, where, "an eval example needs `output` or `answers`"))
            continue
        ex_id = spec.id or f"{id_prefix}-{where.split()[-1]}"
        if ex_id in seen:
            problems.append(Problem(label, f"{where}, field id", f"duplicate id {ex_id!r}"))
            continue
        seen.add(ex_id)
        examples.append(Example(
            id=ex_id, input=spec.input, output=spec.output, answers=tuple(spec.answers),
            choices=tuple(spec.choices), tags=tuple(spec.tags), source=spec.source, cluster=spec.cluster,
            paraphrases=tuple(spec.paraphrases), human_scores=tuple((h.answer, h.score) for h in spec.human_scores),
        ))
    if not examples and not problems:
        problems.append(Problem(label, "", "has no examples"))
    return examples, problems, systems


def read_examples(path: Path, need_output: bool, columns: dict[str, str] | None = None) -> list[Example]:
    """Examples of one data file (any format in loaders.LOADERS); all bad rows in one TaskError."""
    try:
        rows = loaders.read_rows(path)
    except loaders.LoadError as e:
        raise TaskError([Problem(e.path, e.where, e.message, e.fix)]) from None
    examples, problems, _ = examples_from_rows(rows, str(path), loaders.data_stem(path), need_output, columns)
    if problems:
        raise TaskError(problems)
    return examples


def _hub_key(src: DataSource) -> str:
    """How a Hub dataset is named among the task's files (its content hash stands beside it in `Task.files`)."""
    return f"hf:{src.hf}" + (f"/{src.config}" if src.config else "") + f":{src.split}"


def _source(root: Path, src: str | DataSource, file: Path, name: str) -> tuple[loaders.Rows, str, str]:
    """(rows, label for errors, id prefix) of one data source named in task.yaml."""
    if isinstance(src, str):
        src = DataSource(path=src)
    if (src.path is None) == (src.hf is None):
        raise TaskError.one(file, f"field {name}", "give exactly one of `path` (a file or folder here) "
                                                   "or `hf` (a Hugging Face dataset id)")
    try:
        if src.hf is not None:
            rows = loaders.hub_dataset_rows(src.hf, src.split, src.config, src.revision)
            return rows, f"{src.hf} ({src.split})", src.split  # default ids: train-1, test-1, ...
        path = _inside(root, src.path, file, f"field {name}")
        for hub_only in ("config", "revision"):
            if getattr(src, hub_only) is not None:
                raise TaskError.one(file, f"field {name}.{hub_only}",
                                    f"`{hub_only}` belongs to a Hugging Face dataset (`hf`)")
        if src.split is not None and not path.is_dir():
            raise TaskError.one(file, f"field {name}.split", "`split` picks a split of a Hub dataset or a saved "
                                                             "DatasetDict folder, not of a file")
        return loaders.read_rows(path, src.split), str(path), src.split or loaders.data_stem(path)
    except loaders.LoadError as e:
        if src.hf is not None:
            raise TaskError.one(file, f"field {name}", e.message, e.fix) from None
        raise TaskError([Problem(e.path, e.where, e.message, e.fix)]) from None


def split_examples(rows: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example], dict]:
    """Hold out `eval_fraction` of one data file as eval, seeded, stratified by first tag when rows have tags."""
    stratified = any(ex.tags for ex in rows)
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(rows):
        groups.setdefault(ex.tags[0] if (stratified and ex.tags) else "", []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        held.update(members[: round(len(members) * eval_fraction)])
    if not held and len(rows) > 1:  # tiny files: at least one eval item
        held.add(rng.randrange(len(rows)))
    train = [ex for i, ex in enumerate(rows) if i not in held]
    eval_rows = [ex for i, ex in enumerate(rows) if i in held]
    record = {"eval_fraction": eval_fraction, "seed": seed, "stratified_by": "first tag" if stratified else None,
              "train": len(train), "eval": len(eval_rows), "eval_ids": [ex.id for ex in eval_rows]}
    return train, eval_rows, record


def read_documents(root: Path, entries: list[str], file: Path, field_name: str) -> tuple[list[Document], list[str]]:
    """The documents, and warnings about what was read only in part (e.g. a scanned PDF's pages)."""
    docs: list[Document] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    for i, rel in enumerate(entries):
        where = f"field {field_name}[{i}]"
        try:
            path = _inside(root, rel, file, where)
        except TaskError as e:
            problems.extend(e.problems)
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
            base = path
        else:
            files, base = [path], path.parent
        if not files:
            problems.append(Problem(str(file), where, f"{rel!r} holds no documents",
                                    f"documents are {', '.join(sorted(DOC_SUFFIXES))} files"))
            continue
        for f in files:
            if not f.resolve().is_relative_to(root.resolve()):
                problems.append(Problem(str(file), where, f"{f} points outside the task folder"))
                continue
            reader = loaders.DOCUMENT_LOADERS.get(f.suffix.lower())
            if reader is None:
                problems.append(Problem(str(f), "", f"unknown document type {f.suffix!r}",
                                        f"use {', '.join(sorted(DOC_SUFFIXES))}"))
                continue
            try:
                records = reader(f)
            except loaders.LoadError as e:
                problems.append(Problem(e.path, e.where, e.message, e.fix))
                continue
            rel_id = f.relative_to(base).as_posix()
            for r in records:
                doc_id = rel_id if r.row_id is None else f"{rel_id}{r.row_id}" if r.row_id.startswith("#") else r.row_id
                docs.append(Document(id=doc_id, text=r.text, **r.meta))
                if r.warning:
                    warnings.append(f"{f}: {r.warning}")
    ids = Counter(d.id for d in docs)
    dup = sorted(i for i, n in ids.items() if n > 1)
    if dup:
        problems.append(Problem(str(file), f"field {field_name}", f"duplicate document ids: {dup}",
                                "give each document line a unique `id`"))
    if problems:
        raise TaskError(problems)
    return docs, warnings


def _check_models(models: ModelsSpec, out: _Collector, strategies: Mapping[str, str] | None) -> None:
    """Named generators are complete, `use` names known strategies and generators, LoRA runs locally."""
    for name, g in models.generators.items():
        where = ("models", "generators", name)
        if (g.hf is None) == (g.endpoint is None):
            out.field(where, "give exactly one of `hf` (a local model) or `endpoint` (an API base URL)")
        if g.endpoint is not None:
            if not re.match(r"^https?://", g.endpoint):
                out.field(where + ("endpoint",), f"{g.endpoint!r} is not an http(s) URL")
            if not g.model:
                out.field(where + ("model",), "an endpoint needs the model name it serves")
            if g.hardware_price_per_hour is not None:
                out.field(where + ("hardware_price_per_hour",),
                          "an endpoint is priced per token (input/output_price_per_mtok)")
        elif g.model or g.api_key_env:
            out.field(where, "`model` and `api_key_env` belong to an endpoint; a local model names `hf`")
        if (g.input_price_per_mtok is None) != (g.output_price_per_mtok is None):
            out.field(where, "give both input_price_per_mtok and output_price_per_mtok, or neither")
    for strategy, name in models.use.items():
        where = ("models", "use", strategy)
        if strategies is not None and strategy not in strategies:
            out.field(where, f"unknown strategy {strategy!r}", f"known: {', '.join(strategies)}")
            continue
        if name != "default" and name not in models.generators:
            out.field(where, f"{name!r} is not in models.generators",
                      f"named: {', '.join(models.generators) or 'none'}")
            continue
        family = (strategies or {}).get(strategy, "")
        if family.startswith("finetune") and models.for_strategy(strategy)[1].is_endpoint:
            out.field(where, f"{strategy} trains a LoRA adapter, so it needs a local model (`hf`), not an endpoint")


def _check_scoring(spec: TaskSpec, out: _Collector, scorers: Collection[str]) -> None:
    sc = spec.scoring
    methods = {("scoring", "method"): sc.method} | {("scoring", "by_tag", t): m for t, m in sc.by_tag.items()}
    for where, method in methods.items():
        for i, m in enumerate(method_names(method)):
            if m not in scorers:
                plugin_methods = [s for s in scorers if s not in BUILTIN_METHODS]
                place = where + ("all_of", i) if isinstance(method, AllOf) else where
                out.field(place, f"unknown scoring method {m!r}", f"built in: {', '.join(BUILTIN_METHODS)}; "
                                                                  f"plug-ins: {', '.join(plugin_methods) or 'none installed'}")
    if sc.uses("regex") and not sc.regex:
        out.field("scoring.regex", "method `regex` needs a pattern in scoring.regex")
    if sc.uses("format") and not sc.format:
        out.field("scoring.format", "method `format` needs a pattern in scoring.format")
    if sc.uses("judge") and sc.judge is None:
        out.field("scoring.judge", "method `judge` needs scoring.judge with a `rubric` (what a correct answer must do)",
                  "add scoring.judge: {rubric: ..., generator: default}")
    if sc.judge is not None and sc.judge.generator != "default" and sc.judge.generator not in spec.models.generators:
        out.field("scoring.judge.generator", f"{sc.judge.generator!r} is not in models.generators",
                  f"use `default` or one of: {', '.join(spec.models.generators) or 'none named'}")
    if sc.free_text_fields and not sc.uses("json_fields"):
        out.field("scoring.free_text_fields", "only method `json_fields` compares fields; no item is scored with it")
    for pattern_field in ("regex", "format"):
        pattern = getattr(sc, pattern_field)
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                out.field(("scoring", pattern_field), f"invalid regex: {e}")
                continue
            if pattern_field == "format" and "(?P<content>" in pattern and "content" not in compiled.groupindex:
                out.field("scoring.format", "the `content` group could not be read")


def _check_json_references(sc: ScoringSpec, examples: list[Example], label: str, out: _Collector) -> None:
    """Items scored by json_fields need references that are JSON objects to compare fields with."""
    for ex in examples:
        if "json_fields" not in method_names(sc.method_for(ex.tags)):
            continue
        bad = [r for r in ex.references if not _is_json_object(r)]
        if bad or not ex.references:
            out.add(Problem(label, f"example {ex.id!r}, field {'answers' if ex.answers else 'output'}",
                            "is scored by json_fields, so its reference must be a JSON object "
                            f"(found {bad[0][:60]!r})" if bad else "is scored by json_fields but has no reference",
                            "give the expected reply as a JSON object in `output` (or each of `answers`)"))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _without(raw: dict, locs: list[tuple]) -> dict:
    """A copy of the task mapping without the fields that failed validation (at most two levels deep)."""
    import copy

    raw = copy.deepcopy(raw)
    for loc in locs:
        loc = tuple(p for p in loc if p not in _UNION_PARTS)
        if len(loc) >= 2 and isinstance(raw.get(loc[0]), dict) and loc[1] in raw[loc[0]]:
            del raw[loc[0]][loc[1]]
        elif loc and loc[0] in raw:
            del raw[loc[0]]
    return raw


def load_task(path: str | Path, strategies: Mapping[str, str] | None = None,
              scorers: Collection[str] | None = None) -> Task:
    """Load and validate a task folder (or its task.yaml); every problem at once in one TaskError.

    `strategies` maps each known strategy name to its family (prompting, rag, finetune,
    finetune+rag); the CLI passes the registry's. Without it (library use) strategy names
    are not checked. `scorers` defaults to the built-in methods and installed plug-ins.
    """
    path = Path(path)
    file = path / TASK_FILE if path.is_dir() else path
    if not file.is_file():
        raise TaskError.one(file, "", "no such task file", "a task is a folder with task.yaml (advisor init makes one)")
    root = file.parent
    raw, yml = _parse_yaml(_read_text(file), file)
    if not isinstance(raw, dict):
        raise TaskError.one(file, "", "must be a YAML mapping of fields (name, train, eval, ...)",
                            "see `advisor init` for an example")
    out = _Collector(file, yml.lines)
    notices: list[str] = []
    for key_path, line in yml.duplicates:
        out.add(Problem(str(file), f"line {line}, field {'.'.join(map(str, key_path))}",
                        "duplicate key (YAML would silently keep only the last one)", "keep one of them"))
    if isinstance(raw.get("finetune"), dict):
        raw["finetune"] = dict(raw["finetune"])
        for old, new in FINETUNE_RENAMED.items():
            if old not in raw["finetune"]:
                continue
            if new in raw["finetune"]:
                out.field(("finetune", old), f"give {new} or its old name {old}, not both", f"keep {new}")
                del raw["finetune"][old]  # so the section's other fields are still checked
            else:
                notices.append(f"{file}: {out.where(('finetune', old))}: `{old}` is deprecated; "
                               f"use `{new}` (the peft / transformers name)")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        _schema_problems(e, out)
        # Go on with the bad fields at their defaults, so the other checks (files, names) still report.
        try:
            spec = TaskSpec.model_validate(_without(raw, [err["loc"] for err in e.errors()]))
        except ValidationError:  # a required field (name, train) is bad: nothing more can be checked
            raise TaskError(out.items) from None

    if spec.instructions is not None and spec.instructions_file is not None:
        out.field("instructions_file", "give `instructions` or `instructions_file`, not both")
    if spec.eval is not None and spec.eval_fraction is not None:
        out.field("eval_fraction", "`eval_fraction` splits a single `train` file; this task names `eval` too",
                  "remove one of them")
    if spec.strategies is not None and strategies is not None:
        for i, name in enumerate(spec.strategies):
            if name not in strategies:
                out.field(("strategies", i), f"unknown strategy {name!r}", f"known: {', '.join(strategies)}")
    if spec.rag.chunk_overlap >= spec.rag.chunk_tokens:
        out.field("rag.chunk_overlap", "must be smaller than rag.chunk_tokens")
    _check_models(spec.models, out, strategies)
    _check_scoring(spec, out, BUILTIN_METHODS + tuple(plugins.names(plugins.SCORER_GROUP)) if scorers is None
                   else scorers)

    instructions = spec.instructions or ""
    if spec.instructions_file:
        try:
            instructions = _read_text(_inside(root, spec.instructions_file, file, "field instructions_file"))
        except TaskError as e:
            out.extend(e)
    columns = spec.columns.model_dump(exclude_none=True) if spec.columns else {}

    hub_hashes: dict[str, str] = {}  # a Hub dataset's content is part of the task, like a file in its folder

    def examples(name: str, src, need_output: bool) -> tuple[list[Example], list[str]]:
        try:
            rows, label, prefix = _source(root, src, file, name)
        except TaskError as e:
            out.extend(e)
            return [], []
        if isinstance(src, DataSource) and src.hf is not None:
            hub_hashes[_hub_key(src)] = hash_json([row for _, row in rows])
        rows_out, problems, systems = examples_from_rows(rows, label, prefix, need_output, columns)
        for p in problems:
            out.add(p)
        return rows_out, systems

    train, systems = examples("train", spec.train, need_output=True)
    split = None
    if spec.eval is None:
        fraction = spec.eval_fraction or DEFAULT_EVAL_FRACTION
        if len(train) >= 2:
            train, eval_rows, split = split_examples(train, fraction, spec.seed)
            split = {"from": spec.train if isinstance(spec.train, str) else spec.train.model_dump(exclude_none=True)} | split
        else:
            eval_rows = []
            if train:
                out.field("train", "one data file is split into train and eval, so it needs at least 2 examples")
    else:
        eval_rows, _ = examples("eval", spec.eval, need_output=False)
    eval_updated = examples("eval_updated", spec.eval_updated, need_output=False)[0] if spec.eval_updated else []
    for name, rows in (("eval", eval_rows), ("eval_updated", eval_updated)):
        src = getattr(spec, name) or spec.train
        label = src if isinstance(src, str) else (src.path or src.hf or name)
        _check_json_references(spec.scoring, rows, str(root / label) if isinstance(src, str) else label, out)
    if systems and not instructions:
        common, count = Counter(systems).most_common(1)[0]
        instructions = common
        notices.append(f"{file}: instructions taken from the system message of {count} of {len(systems)} chat rows"
                       + ("" if count == len(systems) else " (the others differ; set `instructions` to choose)"))
    documents: list[Document] = []
    updated: list[Document] = []
    for name, entries in (("documents", spec.documents), ("updated_documents", spec.updated_documents)):
        try:
            docs, warnings = read_documents(root, entries, file, name)
        except TaskError as e:
            out.extend(e)
            continue
        notices.extend(warnings)
        documents, updated = (docs, updated) if name == "documents" else (documents, docs)
    doc_ids = {d.id for d in documents}
    for ex in eval_rows:
        if ex.source and documents and ex.source not in doc_ids:
            out.field("eval", f"example {ex.id!r} names source {ex.source!r}, which is not a document",
                      "use a document id: its path under the documents folder, or its JSONL `id`")
    if out.items:
        raise TaskError(out.items)

    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            files[p.relative_to(root).as_posix()] = hash_file(p)
    files |= hub_hashes
    return Task(
        name=spec.name, description=spec.description, root=root, instructions=instructions.strip(),
        train=train, eval=eval_rows, documents=documents, updated_documents=updated,
        eval_updated=eval_updated, spec=spec, files=files, split=split, notices=notices,
    )
