"""Micro-batching, streaming and metrics for `advisor serve`.

Why batch: one batched `generate` of 32 prompts costs about as much as 4 single ones
on 2 CPU cores (benchmarks/README.md), so a server that answers one request at a time
makes its tenth concurrent user wait for nine whole generations. Here requests go into
a bounded asyncio queue; the batcher takes what arrives within `max_wait_ms` (and
whatever queued while the previous batch ran), up to `max_batch`, groups it by sampling
parameters and runs each group as one `Generator.generate_batch` call in one worker
thread (one model in memory, so one generation at a time).

Per row of a batch: a streamer sends each request its own new text as the tokens
arrive, and a stopping criterion ends a row at its own `max_tokens` or when its client
has gone (the whole batch stops once every row has).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from advisor.models import Generation, Generator

log = logging.getLogger("advisor.serve")


class PromptError(Exception):
    """A request that cannot be answered as sent (too long for the window): a 400 to its client."""


@dataclass(frozen=True)
class Event:
    kind: str  # "start" | "delta" | "done" | "error"
    text: str = ""
    generation: Generation | None = None
    status: int = 0  # for "error"


@dataclass(eq=False)
class Job:
    """One chat request on its way through the queue; the worker thread reports back through `events`."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    seed: int
    stream: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)
    sent: str = ""  # the text streamed so far (worker thread only)

    def send(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def next(self) -> Event:
        return await self.events.get()

    @property
    def group(self) -> tuple:
        # Greedy rows share any batch; sampled rows share a batch only with the same temperature and seed.
        return (self.temperature, self.seed) if self.temperature > 0 else (0.0, None)


class Metrics:
    """Counters and recent latencies, rendered in the Prometheus text format (GET /metrics)."""

    WINDOW = 2048  # latency percentiles are over the last this-many requests

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {"ok": 0, "bad_request": 0, "rejected": 0, "cancelled": 0, "error": 0}
        self.prompt_tokens = self.completion_tokens = 0
        self.generation_calls = self.generated_requests = 0
        self.latencies: deque[float] = deque(maxlen=self.WINDOW)
        self.generation_seconds = 0.0

    def count(self, outcome: str) -> None:
        with self.lock:
            self.requests[outcome] += 1

    def finished(self, job: Job, g: Generation) -> None:
        with self.lock:
            self.requests["cancelled" if job.cancelled.is_set() else "ok"] += 1
            self.prompt_tokens += g.prompt_tokens
            self.completion_tokens += g.completion_tokens
            self.latencies.append(time.perf_counter() - job.queued_at)

    def batch(self, size: int, seconds: float) -> None:
        with self.lock:
            self.generation_calls += 1
            self.generated_requests += size
            self.generation_seconds += seconds

    def render(self, queue_depth: int) -> str:
        with self.lock:
            lat = sorted(self.latencies)
            lines = ["# HELP advisor_requests_total Chat completion requests by outcome.",
                     "# TYPE advisor_requests_total counter"]
            lines += [f'advisor_requests_total{{outcome="{k}"}} {v}' for k, v in self.requests.items()]
            for name, value, kind, help_ in (
                ("advisor_prompt_tokens_total", self.prompt_tokens, "counter", "Prompt tokens of answered requests."),
                ("advisor_completion_tokens_total", self.completion_tokens, "counter", "Tokens generated."),
                ("advisor_generation_calls_total", self.generation_calls, "counter",
                 "Batched generation calls (fewer than requests when requests were batched)."),
                ("advisor_generated_requests_total", self.generated_requests, "counter",
                 "Requests that went through a generation call."),
                ("advisor_generation_seconds_total", round(self.generation_seconds, 6), "counter",
                 "Wall time spent in generation calls."),
                ("advisor_queue_depth", queue_depth, "gauge", "Requests waiting for a generation call."),
            ):
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
            lines += [f"# HELP advisor_request_latency_seconds Queue + generation time of the last {self.WINDOW} "
                      "answered requests.", "# TYPE advisor_request_latency_seconds summary"]
            for q in (0.5, 0.95, 0.99):
                value = lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
                lines.append(f'advisor_request_latency_seconds{{quantile="{q}"}} {value:.6f}')
            lines += [f"advisor_request_latency_seconds_sum {sum(lat):.6f}",
                      f"advisor_request_latency_seconds_count {len(lat)}"]
        return "\n".join(lines) + "\n"


class RowStreamer(BaseStreamer):
    """Receives each step's tokens (one per row) from a batched `generate`; streams each row's new text.

    Text is the decode of all the row's tokens so far, stripped as the final answer is,
    and held back while it ends in an incomplete multi-byte character, so the pieces
    concatenate to the non-streamed answer.
    """

    def __init__(self, tokenizer, jobs: list[Job]):
        self.tokenizer, self.jobs = tokenizer, jobs
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.ended = [False] * len(jobs)
        self.stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate first hands over the prompt ids
            self.prompt_seen = True
            return
        for row, token in enumerate(value.tolist()):
            job = self.jobs[row]
            if self.ended[row] or job.cancelled.is_set():
                continue
            if token in self.stop_ids:
                self.ended[row] = True
                continue
            self.tokens[row].append(token)
            if job.stream:
                text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).strip().rstrip("\ufffd")
                if len(text) > len(job.sent) and text.startswith(job.sent):
                    job.send(Event("delta", text[len(job.sent):]))
                    job.sent = text

    def end(self) -> None:
        pass


class RowStops(StoppingCriteria):
    """Ends a row at its own token limit or when its client has gone."""

    def __init__(self, jobs: list[Job]):
        self.jobs, self.steps = jobs, 0

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.steps += 1  # called once per generated token
        done = [j.cancelled.is_set() or self.steps >= j.max_tokens for j in self.jobs]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class Batcher:
    """The queue and the one worker thread that generates.

    `prompt(messages)` turns a request's messages into the conversation the model sees
    (the served strategy's instructions, examples, passages); it runs in the worker
    thread, since retrieval embeds the question.
    """

    def __init__(self, generator, prompt: Callable[[list[dict[str, str]]], list[dict[str, str]]],
                 max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256):
        self.generator, self.prompt = generator, prompt
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.metrics = Metrics()
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="advisor-generate")

    @property
    def depth(self) -> int:
        return self.queue.qsize() if self.queue is not None else 0

    async def start(self) -> None:
        self.queue = asyncio.Queue(self.max_queue)
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    def submit(self, job: Job) -> None:
        """Queue a job; raises asyncio.QueueFull when `max_queue` jobs are already waiting."""
        assert self.queue is not None, "the batcher is started by the app's lifespan"
        self.queue.put_nowait(job)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())  # queued while the last batch ran
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in batch:
                if not job.cancelled.is_set():
                    groups.setdefault(job.group, []).append(job)
            for jobs in groups.values():
                await loop.run_in_executor(self.executor, self._run, jobs)

    def _run(self, jobs: list[Job]) -> None:
        """Worker thread: build the prompts, generate the group in one call, report to each job."""
        ready: list[tuple[Job, list[dict[str, str]]]] = []
        for job in jobs:
            try:
                conversation = self.prompt(job.messages)
                n = self.generator.prompt_tokens(conversation)
                if n + job.max_tokens > self.generator.context_window:
                    raise PromptError(f"the prompt needs {n} tokens; with max_tokens {job.max_tokens} that exceeds "
                                      f"the {self.generator.display_name} window of {self.generator.context_window}")
            except PromptError as e:
                self.metrics.count("bad_request")
                job.send(Event("error", str(e), status=400))
                continue
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
                log.exception("building the prompt failed")
                self.metrics.count("error")
                job.send(Event("error", f"internal error: {type(e).__name__}", status=500))
                continue
            job.send(Event("start"))
            ready.append((job, conversation))
        if not ready:
            return
        jobs = [j for j, _ in ready]
        t0 = time.perf_counter()
        try:
            gens = self._generate(jobs, [c for _, c in ready])
        except Exception as e:  # noqa: BLE001
            log.exception("generation failed")
            for job in jobs:
                self.metrics.count("error")
                job.send(Event("error", f"internal error: {type(e).__name__}", status=500))
            return
        self.metrics.batch(len(jobs), time.perf_counter() - t0)
        for job, g in zip(jobs, gens):
            g = Generation(g.text, g.prompt_tokens, min(g.completion_tokens, job.max_tokens), g.seconds)
            if job.stream and len(g.text) > len(job.sent) and g.text.startswith(job.sent):
                job.send(Event("delta", g.text[len(job.sent):]))
                job.sent = g.text
            self.metrics.finished(job, g)
            job.send(Event("done", generation=g))

    def _generate(self, jobs: list[Job], conversations: list[list[dict[str, str]]]) -> list[Generation]:
        gen, first = self.generator, jobs[0]
        if isinstance(gen, Generator):
            ids = [gen.chat_ids(c) for c in conversations]
            return gen.generate_batch(ids, max(j.max_tokens for j in jobs), first.temperature, first.seed,
                                      streamer=RowStreamer(gen.tokenizer, jobs),
                                      stopping_criteria=StoppingCriteriaList([RowStops(jobs)]))
        # An endpoint-backed strategy: the endpoint does its own batching; each answer arrives whole.
        out: list[Any] = [None] * len(jobs)
        for limit in sorted({j.max_tokens for j in jobs}):
            rows = [i for i, j in enumerate(jobs) if j.max_tokens == limit]
            answers = gen.complete([conversations[i] for i in rows], limit, batch_size=len(rows),
                                   temperature=first.temperature, seed=first.seed, use_cache=False)
            for i, g in zip(rows, answers):
                out[i] = g
        return out
