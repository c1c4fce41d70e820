"""The task definition: one YAML file validated at the edge, plain objects inside.

A task folder holds `task.yaml` plus the files it names (train/eval JSONL,
documents, instructions). Every problem is reported as a TaskError naming the
file, the field or line, and what is wrong; nothing here executes task content
(safe YAML only).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advisor import plugins
from advisor.cache import hash_file

TASK_FILE = "task.yaml"
DOC_SUFFIXES = {".txt", ".md", ".jsonl"}
BUILTIN_METHODS = ("exact", "contains", "f1", "choice", "regex", "format")  # more come from plug-ins (advisor.plugins)


class TaskError(Exception):
    """A bad task: says where (file, field or line) and what is wrong."""

    def __init__(self, file: Path | str, where: str, message: str):
        self.file, self.where, self.message = str(file), where, message
        super().__init__(f"{file}: {where}: {message}" if where else f"{file}: {message}")


# ---------------------------------------------------------------- schema (edge)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoringSpec(_Strict):
    method: str = "contains"
    by_tag: dict[str, str] = Field(default_factory=dict)
    regex: str | None = None
    format: str | None = Field(None, description="regex every well-formed answer matches")
    f1_threshold: float = Field(0.5, ge=0, le=1)


class OwnershipSpec(_Strict):
    """People and infrastructure costs that token and hardware prices miss (USD)."""

    setup_usd: float = Field(0, ge=0, description="one-time: data pipeline, evals, deployment of this approach")
    monthly_usd: float = Field(0, ge=0, description="running it: hosting a custom model or a vector store, monitoring")


class EconomicsSpec(_Strict):
    requests_per_day: float = Field(1000, gt=0)
    horizon_days: float = Field(365, gt=0)
    input_price_per_mtok: float = Field(0.5, ge=0)
    output_price_per_mtok: float = Field(1.5, ge=0)
    hardware_price_per_hour: float = Field(2.0, ge=0)
    knowledge_changes_per_month: float = Field(0, ge=0)
    value_per_correct: float | None = Field(None, ge=0)
    cost_per_error: float | None = Field(None, ge=0)
    # Keyed by family; a combination (finetune+rag) pays for each of its parts.
    ownership: dict[Literal["prompting", "rag", "finetune"], OwnershipSpec] = Field(default_factory=dict)


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
    batch_size: int = Field(16, ge=1, le=512)


class PromptingSpec(_Strict):
    few_shot_k: int = Field(3, ge=0, le=64)


class RagSpec(_Strict):
    chunk_tokens: int = Field(160, ge=16, le=4096)
    chunk_overlap: int = Field(32, ge=0)
    top_k: int = Field(2, ge=1, le=50)
    approximate_above: int = Field(20000, ge=1, description="chunks above which an HNSW index replaces exact search")


class FinetuneSpec(_Strict):
    r: int = Field(16, ge=1, le=512)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    epochs: int = Field(2, ge=1, le=100)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(8, ge=1, le=1024)
    grad_accum: int = Field(1, ge=1, le=1024)
    val_fraction: float = Field(0.1, ge=0, lt=0.9)
    patience: int = Field(1, ge=0)
    max_length: int = Field(512, ge=16)
    # Memory, not results (float rounding aside): a batch is computed in pieces of at most this many padded
    # tokens and their gradients summed (activation memory grows ~1.6 MB per token for the default model).
    micro_batch_tokens: int = Field(512, ge=16, description="padded tokens per forward/backward piece of a batch")
    # lora+rag gets its own adapter trained with retrieved passages in its prompts (as it is used), as a
    # practitioner would deploy it; false reuses the plain adapter (one training run instead of two).
    retrieval_aware: bool = Field(True, description="train a separate lora+rag adapter with retrieved passages in the prompt")


class ConsistencySpec(_Strict):
    samples: int = Field(3, ge=0, le=50)
    temperature: float = Field(0.7, gt=0, le=5)
    items: int = Field(8, ge=0)


class LatencySpec(_Strict):
    requests: int = Field(2, ge=0, le=100)


class TaskSpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    instructions: str | None = None
    instructions_file: str | None = None
    train: str
    eval: str
    documents: list[str] = Field(default_factory=list)
    updated_documents: list[str] = Field(default_factory=list)
    eval_updated: str | None = None
    strategies: list[str] | None = None
    seed: int = 0
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    economics: EconomicsSpec = Field(default_factory=EconomicsSpec)
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


class ExampleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    input: str = Field(min_length=1)
    output: str | None = None
    answers: list[str] = Field(default_factory=list)
    choices: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    source: str | None = None
    paraphrases: list[str] = Field(default_factory=list)

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

    @property
    def references(self) -> tuple[str, ...]:
        """What a correct answer may say: explicit answers, else the output."""
        return self.answers or ((self.output,) if self.output else ())


@dataclass(frozen=True)
class Document:
    id: str  # path relative to its documents root, or the JSONL row id
    text: str


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
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256


# ---------------------------------------------------------------------- loading


def _inside(root: Path, rel: str, file: Path, where: str) -> Path:
    if "\x00" in rel:  # the OS cannot take it; say so instead of a ValueError from deep in pathlib
        raise TaskError(file, where, f"path {rel!r} contains a NUL character")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise TaskError(file, where, f"path {rel!r} points outside the task folder")
    if not path.exists():
        raise TaskError(file, where, f"{rel!r} does not exist")
    return path


def _read_text(path: Path, file_for_errors: Path | None = None) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TaskError(path, "", f"cannot read: {e.strerror}") from None
    if b"\x00" in data:
        raise TaskError(path, "", "is a binary file, expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TaskError(path, f"line {line}", "is not valid UTF-8 text") from None


def _format_validation(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see `advisor init` for every field)"
    more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
    return loc, msg + more


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is an error."""
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(path, f"line {n}", f"not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise TaskError(path, f"line {n}", "each line must be a JSON object")
        yield n, raw


def read_examples(path: Path, need_output: bool) -> list[Example]:
    rows: list[Example] = []
    seen: set[str] = set()
    for n, raw in _jsonl_objects(path):
        try:
            spec = ExampleSpec.model_validate(raw)
        except ValidationError as e:
            loc, msg = _format_validation(e)
            raise TaskError(path, f"line {n}, field {loc}", msg) from None
        if need_output and not spec.output:
            raise TaskError(path, f"line {n}, field output", "training examples need an output")
        if not need_output and not (spec.output or spec.answers):
            raise TaskError(path, f"line {n}", "an eval example needs `output` or `answers`")
        ex_id = spec.id or f"{path.stem}-{n}"
        if ex_id in seen:
            raise TaskError(path, f"line {n}, field id", f"duplicate id {ex_id!r}")
        seen.add(ex_id)
        rows.append(
            Example(
                id=ex_id, input=spec.input, output=spec.output, answers=tuple(spec.answers),
                choices=tuple(spec.choices), tags=tuple(spec.tags), source=spec.source,
                paraphrases=tuple(spec.paraphrases),
            )
        )
    if not rows:
        raise TaskError(path, "", "has no examples")
    return rows


def read_documents(root: Path, entries: list[str], file: Path, field_name: str) -> list[Document]:
    docs: list[Document] = []
    for i, rel in enumerate(entries):
        where = f"{field_name}[{i}]"
        path = _inside(root, rel, file, where)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DOC_SUFFIXES)
            base = path
        else:
            files, base = [path], path.parent
        if not files:
            raise TaskError(file, where, f"{rel!r} holds no .txt, .md or .jsonl documents")
        for f in files:
            if not f.resolve().is_relative_to(root.resolve()):
                raise TaskError(file, where, f"{f} points outside the task folder")
            if f.suffix == ".jsonl":
                docs.extend(_jsonl_documents(f, base))
            else:
                docs.append(Document(id=f.relative_to(base).as_posix(), text=_read_text(f)))
    ids = [d.id for d in docs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise TaskError(file, field_name, f"duplicate document ids: {sorted(dup)}")
    return docs


def _jsonl_documents(path: Path, base: Path) -> list[Document]:
    out = []
    for n, raw in _jsonl_objects(path):
        if not isinstance(raw.get("text"), str):
            raise TaskError(path, f"line {n}", "a document line needs a string field `text`")
        doc_id = str(raw.get("id") or f"{path.relative_to(base).as_posix()}#{n}")
        out.append(Document(id=doc_id, text=raw["text"]))
    return out


def _check_models(models: ModelsSpec, file: Path, known: Mapping[str, str] | None) -> None:
    """Named generators are complete, `use` names known strategies and generators, LoRA runs locally.

    `known` maps strategy name -> family; None (library use without the registry) skips the name check.
    """
    for name, g in models.generators.items():
        where = f"field models.generators.{name}"
        if (g.hf is None) == (g.endpoint is None):
            raise TaskError(file, where, "give exactly one of `hf` (a local model) or `endpoint` (an API base URL)")
        if g.endpoint is not None:
            if not re.match(r"^https?://", g.endpoint):
                raise TaskError(file, f"{where}.endpoint", f"{g.endpoint!r} is not an http(s) URL")
            if not g.model:
                raise TaskError(file, f"{where}.model", "an endpoint needs the model name it serves")
            if g.hardware_price_per_hour is not None:
                raise TaskError(file, f"{where}.hardware_price_per_hour",
                                "an endpoint is priced per token (input/output_price_per_mtok)")
        elif g.model or g.api_key_env:
            raise TaskError(file, where, "`model` and `api_key_env` belong to an endpoint; a local model names `hf`")
        if (g.input_price_per_mtok is None) != (g.output_price_per_mtok is None):
            raise TaskError(file, where, "give both input_price_per_mtok and output_price_per_mtok, or neither")
    for strategy, name in models.use.items():
        where = f"field models.use.{strategy}"
        if known is not None and strategy not in known:
            raise TaskError(file, where, f"unknown strategy {strategy!r}; known: {', '.join(known)}")
        if name != "default" and name not in models.generators:
            raise TaskError(file, where, f"{name!r} is not in models.generators "
                                         f"(named: {', '.join(models.generators) or 'none'})")
        trains = "finetune" in str((known or {}).get(strategy, ""))
        if trains and models.for_strategy(strategy)[1].is_endpoint:
            raise TaskError(file, where, f"{strategy} trains a LoRA adapter, so it needs a local model (`hf`), "
                                         "not an endpoint")


def load_task(path: str | Path, strategies: Mapping[str, str] | None = None) -> Task:
    """Load and validate a task folder (or its task.yaml).

    `strategies` maps each known strategy name to its family (the CLI passes the
    registry's); names in the task are checked against it. None skips that check.
    """
    path = Path(path)
    file = path / TASK_FILE if path.is_dir() else path
    if not file.exists():
        raise TaskError(file, "", "no such task file (a task is a folder with task.yaml)")
    root = file.parent
    try:
        raw = yaml.safe_load(_read_text(file))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaskError(file, where, f"invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise TaskError(file, "", "must be a YAML mapping of fields (name, train, eval, ...)")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        loc, msg = _format_validation(e)
        raise TaskError(file, f"field {loc}", msg) from None

    if spec.instructions_file:
        instructions = _read_text(_inside(root, spec.instructions_file, file, "instructions_file"))
    else:
        instructions = spec.instructions or ""
    train = read_examples(_inside(root, spec.train, file, "train"), need_output=True)
    eval_rows = read_examples(_inside(root, spec.eval, file, "eval"), need_output=False)
    documents = read_documents(root, spec.documents, file, "documents")
    updated = read_documents(root, spec.updated_documents, file, "updated_documents")
    eval_updated = (
        read_examples(_inside(root, spec.eval_updated, file, "eval_updated"), need_output=False)
        if spec.eval_updated else []
    )
    methods = {"scoring.method": spec.scoring.method} | {f"scoring.by_tag.{t}": m for t, m in spec.scoring.by_tag.items()}
    plugin_methods = plugins.names(plugins.SCORER_GROUP)
    for where, m in methods.items():
        if m not in BUILTIN_METHODS and m not in plugin_methods:
            raise TaskError(file, f"field {where}", f"unknown scoring method {m!r}; built in: {', '.join(BUILTIN_METHODS)}"
                            f"; plug-ins: {', '.join(plugin_methods) or 'none installed'}")
    for m in set(methods.values()):
        if m == "regex" and not spec.scoring.regex:
            raise TaskError(file, "field scoring.regex", "method `regex` needs a pattern in scoring.regex")
        if m == "format" and not spec.scoring.format:
            raise TaskError(file, "field scoring.format", "method `format` needs a pattern in scoring.format")
    for pattern_field in ("regex", "format"):
        pattern = getattr(spec.scoring, pattern_field)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as e:
                raise TaskError(file, f"field scoring.{pattern_field}", f"invalid regex: {e}") from None
    if spec.rag.chunk_overlap >= spec.rag.chunk_tokens:
        raise TaskError(file, "field rag.chunk_overlap", "must be smaller than rag.chunk_tokens")
    _check_models(spec.models, file, strategies)
    doc_ids = {d.id for d in documents}
    for ex in eval_rows:
        if ex.source and documents and ex.source not in doc_ids:
            raise TaskError(file, "field eval", f"example {ex.id!r} names source {ex.source!r}, which is not a document")

    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            files[p.relative_to(root).as_posix()] = hash_file(p)
    return Task(
        name=spec.name, description=spec.description, root=root, instructions=instructions.strip(),
        train=train, eval=eval_rows, documents=documents, updated_documents=updated,
        eval_updated=eval_updated, spec=spec, files=files,
    )
