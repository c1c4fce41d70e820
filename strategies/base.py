"""The one interface every strategy implements.

A strategy prepares itself on the task (build a prompt, an index, an adapter),
turns an input into chat messages, and says which adapter (if any) generates.
The base class does the generation, token counting and context-window check, so
a new strategy is one small subclass in one new file of this package.
Generation goes through the strategy's generator, a local model or an endpoint
(the task's `models.use` says which); both take chat messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from advisor.kinds import Family
from advisor.task import Example, Task

if TYPE_CHECKING:  # a type only: checking a task must not load torch
    from advisor.models import Embedder


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    sources: list[str] = field(default_factory=list)  # retrieved document ids, best first
    passages: list[str] = field(default_factory=list)  # the retrieved passages' text, as the prompt carried them
    dropped_examples: int = 0  # few-shot examples dropped to fit the context window


@dataclass
class Setup:
    """What preparing the strategy cost, measured (and kept when an artifact is reused)."""

    train_seconds: float = 0.0
    index_seconds: float = 0.0
    knowledge_in_weights: bool = False  # a knowledge change then needs a retrain
    details: dict[str, Any] = field(default_factory=dict)  # only index, training, adapter: see advisor.results.Setup


class ContextTooLong(Exception):
    pass


class Context:
    """What strategies share in one run: the task, the seed, the models, and memoized artifacts.

    `generators` maps strategy name -> the generator it runs on (models.use); a name
    not in it runs on `generator`, the default. The seed is the run's, passed in
    explicitly: the task file's `seed` is only its default.
    """

    def __init__(self, task: Task, seed: int, generator, embedder_factory: Callable[[], Embedder], work_dir: Path,
                 generators: dict[str, Any] | None = None, reuse_only: bool = False):
        self.task = task
        self.seed = seed
        self.generator = generator
        self.generators = generators or {}
        self._embedder_factory = embedder_factory
        self._embedder: Embedder | None = None
        self.work_dir = work_dir
        self._shared: dict[str, Any] = {}
        self.reuse_only = reuse_only  # serving a finished run: reuse its adapters, never train

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    @property
    def embedder_if_loaded(self) -> Embedder | None:
        """The embedder if some strategy used it (results name it only then)."""
        return self._embedder

    def with_task(self, task: Task) -> "Context":
        """The same models and seed on another task (a data-curve subset); artifacts are not shared."""
        return Context(task, self.seed, self.generator, lambda: self.embedder, self.work_dir, self.generators,
                       self.reuse_only)

    def generator_for(self, strategy: str):
        return self.generators.get(strategy, self.generator)

    def shared(self, key: str, build: Callable[[], Any]) -> Any:
        """Build an artifact once per run (an index, an adapter) and hand it to every strategy."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]


class Strategy:
    name: ClassVar[str]
    description: ClassVar[str]
    # Order of simplicity (lower is simpler, cheaper to build and run); ties go to the simpler.
    complexity: ClassVar[int]
    family: ClassVar[Family]
    # What its prompt carries besides the question (read by `advisor run --dry-run`'s first estimate).
    use_instructions: ClassVar[bool] = True
    few_shot: ClassVar[bool] = False  # prompting.few_shot_k train examples

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.setup = Setup()

    # -- what a strategy defines

    def prepare_shared(self) -> None:
        """Build what other rows or processes then read from the cache (a retrieval index).

        `advisor train` calls it on the main process before the others start, so several
        processes never write the same artifact at once. Most rows need nothing here.
        """

    def prepare(self) -> None:
        """Build whatever the strategy needs before answering (index, adapter)."""

    def messages(self, text: str, drop: int = 0) -> list[dict[str, str]]:
        """Chat messages for one input; `drop` asks to leave out that many few-shot examples."""
        raise NotImplementedError

    def sources(self, text: str) -> list[str]:
        return []

    def passages(self, text: str) -> list[str]:
        """The retrieved passages' text (what grounding checks an answer against); none for rows that do not retrieve."""
        return []

    @property
    def adapter_path(self) -> Path | None:
        return None

    def refresh_documents(self, documents) -> None:
        """Knowledge changed: update what can be updated without retraining (freshness)."""

    # -- shared machinery

    @property
    def generator(self):
        """The model this strategy runs on: a local Generator or an EndpointGenerator."""
        return self.ctx.generator_for(self.name)

    def _fit(self, text: str) -> tuple[list[dict[str, str]], int]:
        """(messages, few-shot examples dropped) that fit the generator's context window with the answer.

        A local model counts exactly; for an endpoint the embedded tokenizer gives an
        estimate before sending, and the server's `usage` the real counts after.
        """
        gen, max_new = self.generator, self.ctx.task.spec.generation.max_new_tokens
        drop = 0
        while True:
            messages = self.messages(text, drop=drop)
            n = gen.prompt_tokens(messages)
            if n <= gen.context_window - max_new:
                return messages, drop
            if drop >= self.ctx.task.spec.prompting.few_shot_k:
                raise ContextTooLong(
                    f"strategy {self.name}: the prompt for input {text[:60]!r} needs {n} tokens, more than "
                    f"the {gen.display_name} window of {gen.context_window} minus {max_new} for the answer, "
                    "even with no few-shot examples"
                )
            drop += 1

    def prompt(self, text: str) -> list[dict[str, str]]:
        """The chat messages this strategy sends for one input, fitted to the window (what a server sends)."""
        return self._fit(text)[0]

    def answer(self, inputs: list[str], temperature: float = 0.0, sample_index: int | Sequence[int] = 0,
               seed: int | None = None, max_new_tokens: int | None = None, use_cache: bool = True) -> list[Answer]:
        spec = self.ctx.task.spec
        prompts = [self._fit(t) for t in inputs]
        with self.generator.adapter(self.adapter_path):
            gens = self.generator.complete(
                [m for m, _ in prompts], max_new_tokens=max_new_tokens or spec.generation.max_new_tokens,
                batch_size=spec.generation.batch_size, batch_tokens=spec.generation.batch_tokens,
                temperature=temperature, seed=self.ctx.seed if seed is None else seed, sample_index=sample_index,
                use_cache=use_cache,
            )
        return [
            Answer(text=g.text, prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens,
                   seconds=g.seconds, sources=self.sources(t), passages=self.passages(t), dropped_examples=d)
            for g, t, (_, d) in zip(gens, inputs, prompts)
        ]

    def time_one(self, text: str) -> float:
        """Wall time of one request answered alone (no batching, no cache): the latency a user sees."""
        spec = self.ctx.task.spec
        messages, _ = self._fit(text)
        with self.generator.adapter(self.adapter_path):
            t0 = time.perf_counter()
            self.generator.complete([messages], max_new_tokens=spec.generation.max_new_tokens, batch_size=1,
                                    use_cache=False)
            return time.perf_counter() - t0


def fewshot_messages(instructions: str, shots: list[Example], user: str) -> list[dict[str, str]]:
    """System instructions, then each example as a user/assistant turn, then the request."""
    msgs = [{"role": "system", "content": instructions}] if instructions else []
    for ex in shots:
        msgs += [{"role": "user", "content": ex.input}, {"role": "assistant", "content": ex.output or ""}]
    msgs.append({"role": "user", "content": user})
    return msgs
