"""Iteration-level scheduling, streaming and metrics for `advisor serve`.

Why: one decode step for 32 rows costs about as much as for one on 2 CPU cores (the
weights are read once per step either way), so a server should keep as many requests
in the batch as it can; and a short answer should not wait for the longest one sharing
its batch. So the engine is a step loop, as vLLM's is (Orca's iteration-level scheduling):

- one worker thread owns the model; each iteration it admits waiting requests (their
  prompts prefilled together, their KV caches left-padded and joined to the running
  batch's), runs one decode step for every running row, and lets each finished row
  leave at once: its client gets its answer while the others keep generating;
- each row samples with its own temperature, top_p and `torch.Generator` (seeded from
  the request's `seed`, else from fresh randomness), so a seeded request gives the same
  text whatever else shares the batch;
- a row ends at EOS, its own `max_tokens`, one of its `stop` strings (trimmed from the
  text), its generation timeout, or when its client has gone; a waiting request that
  outlives the queue timeout is answered 503.

A strategy whose model is an endpoint (a hosted row) has no steps to schedule: its
requests are forwarded whole, grouped by sampling parameters.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from advisor.models import Generation, Generator

log = logging.getLogger("advisor.serve")


class PromptError(Exception):
    """A request that cannot be answered as sent (too long for the window): a 400 to its client."""


@dataclass(frozen=True)
class Sampling:
    """A request's sampling parameters, as OpenAI names them."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None  # None: fresh randomness
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    kind: str  # "start" | "delta" | "done" | "error"
    text: str = ""
    generation: Generation | None = None
    finish_reason: str = ""  # for "done": "stop" (EOS or a stop string) or "length"
    status: int = 0  # for "error"
    code: str | None = None  # for "error": OpenAI's machine-readable code
    param: str | None = None  # for "error": the request field at fault


@dataclass(eq=False)
class Job:
    """One chat request on its way through the engine; the worker thread reports back through `events`."""

    messages: list[dict[str, str]]
    sampling: Sampling
    stream: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)
    # Worker thread only, from here on.
    started_at: float = 0.0
    first_token_at: float = 0.0
    prompt_tokens: int = 0
    tokens: list[int] = field(default_factory=list)
    sent: str = ""  # the text streamed so far
    rng: torch.Generator | None = None

    def send(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def next(self) -> Event:
        return await self.events.get()

    @property
    def group(self) -> tuple:
        """Requests an endpoint can answer in one call: the same sampling parameters."""
        s = self.sampling
        return (s.max_tokens, s.temperature, s.top_p, s.seed)


# Buckets as vLLM's (vllm/v1/metrics/loggers.py), so its dashboards read these histograms unchanged.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
OUTCOMES = ("ok", "bad_request", "rejected", "queue_timeout", "generation_timeout", "cancelled", "error")


class Metrics:
    """Prometheus metrics under vLLM's names and types (`vllm:`, label `model_name`), plus `advisor:` ones.

    vLLM's names, so a dashboard or alert written for a vLLM server reads this one too;
    `advisor:requests_total{outcome}` counts what vLLM has no metric for (rejected,
    timed out, cancelled). One registry per app: several servers can share a process.
    """

    def __init__(self, model_name: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # as vLLM does: no `_created` series beside every counter
        self.registry = CollectorRegistry()
        m, r = ["model_name"], self.registry
        self.running = Gauge("vllm:num_requests_running", "Requests in the running batch.", m, registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting to join the batch.", m, registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefill tokens processed.", m, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Generation tokens processed.", m, registry=r)
        self.success = Counter("vllm:request_success", "Requests answered, by finish reason.",
                               m + ["finished_reason"], registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency (queue + generation).",
                             m, buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("vllm:request_queue_time_seconds", "Time waiting before joining the batch.",
                                    m, buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time from arrival to the first token.",
                              m, buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("vllm:time_per_output_token_seconds",
                              "Mean time per output token after the first, per request.", m, buckets=TPOT_BUCKETS,
                              registry=r)
        self.outcomes = Counter("advisor:requests", "Chat completion requests by outcome.", ["outcome"], registry=r)
        self.steps = Counter("advisor:decode_steps", "Decode steps run (one token for every running row).",
                             registry=r)
        self.step_rows = Counter("advisor:decode_rows", "Rows summed over decode steps (rows / steps = mean batch).",
                                 registry=r)
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome)  # every outcome present from the start, at 0
        self.labels = {"model_name": model_name}
        for metric in (self.running, self.waiting, self.prompt_tokens, self.generation_tokens):
            metric.labels(**self.labels)

    def count(self, outcome: str) -> None:
        self.outcomes.labels(outcome).inc()

    def finished(self, job: Job, g: Generation, finish_reason: str) -> None:
        now, lab = time.perf_counter(), self.labels
        self.count("ok")
        self.success.labels(finished_reason=finish_reason, **lab).inc()
        self.prompt_tokens.labels(**lab).inc(g.prompt_tokens)
        self.generation_tokens.labels(**lab).inc(g.completion_tokens)
        self.e2e.labels(**lab).observe(now - job.queued_at)
        self.queue_time.labels(**lab).observe(job.started_at - job.queued_at)
        first = job.first_token_at or now
        self.ttft.labels(**lab).observe(first - job.queued_at)
        if g.completion_tokens > 1:
            self.tpot.labels(**lab).observe((now - first) / (g.completion_tokens - 1))

    def render(self, running: int, waiting: int) -> bytes:
        from prometheus_client import generate_latest

        self.running.labels(**self.labels).set(running)
        self.waiting.labels(**self.labels).set(waiting)
        return generate_latest(self.registry)


def stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string starts in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could be the start of a stop string (not streamed yet)."""
    for n in range(min(len(text), max((len(s) for s in stops), default=0)), 0, -1):
        if any(s.startswith(text[-n:]) for s in stops):
            return n
    return 0


def streamable(text: str, stops: tuple[str, ...]) -> str:
    """What of the answer so far can be streamed: not a possible stop string's start, nor a half character."""
    return text[:len(text) - held_back(text, stops)].rstrip("\ufffd")


def left_pad(x: torch.Tensor, width: int, dim_from_end: int) -> torch.Tensor:
    """Pad `x` with zeros on the left of one dimension (counted from the end) up to `width`."""
    missing = width - x.shape[-dim_from_end]
    return F.pad(x, (0, 0) * (dim_from_end - 1) + (missing, 0)) if missing > 0 else x


class Batch:
    """The running rows' KV cache and attention mask, laid out [padding | prompt | generated] per row.

    Rows join (their cache left-padded to a common width), leave (selected out), and the
    columns no row uses any more are trimmed from the left.
    """

    def __init__(self):
        self.jobs: list[Job] = []
        self.cache = None  # a transformers DynamicCache
        self.mask: torch.Tensor | None = None

    def join(self, jobs: list[Job], cache, mask: torch.Tensor) -> None:
        if not self.jobs:
            self.jobs, self.cache, self.mask = list(jobs), cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            if mine.is_sliding:
                raise RuntimeError("a sliding-window KV cache cannot be joined; serve this model with --max-batch 1")
            mine.keys = torch.cat([left_pad(mine.keys, width, 2), left_pad(theirs.keys, width, 2)])
            mine.values = torch.cat([left_pad(mine.values, width, 2), left_pad(theirs.values, width, 2)])
        self.mask = torch.cat([left_pad(self.mask, width, 1), left_pad(mask, width, 1)])
        self.jobs += jobs

    def keep(self, rows: list[int]) -> None:
        if not rows:
            self.jobs, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask[index]
        start = int((mask.sum(0) > 0).int().argmax())  # the first column any remaining row uses
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.mask = mask[:, start:]
        self.jobs = [self.jobs[i] for i in rows]


class Batcher:
    """The waiting queue and the one worker thread that steps the model.

    `prompt(messages)` turns a request's messages into the conversation the model sees
    (the served strategy's instructions, examples, passages); it runs in the worker
    thread, since retrieval embeds the question.
    """

    def __init__(self, generator, prompt: Callable[[list[dict[str, str]]], list[dict[str, str]]],
                 model_name: str, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256,
                 queue_timeout: float = 60.0, generation_timeout: float = 300.0):
        self.generator, self.prompt = generator, prompt
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.queue_timeout, self.generation_timeout = queue_timeout, generation_timeout
        self.metrics = Metrics(model_name)
        self.waiting: deque[Job] = deque()
        self.batch = Batch()
        self.wake = threading.Condition()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.local = isinstance(generator, Generator)
        if self.local:
            tok = generator.tokenizer
            eos = generator.model.generation_config.eos_token_id
            self.stop_ids = {tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    @property
    def depth(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.batch.jobs)

    def render_metrics(self) -> bytes:
        return self.metrics.render(self.running, self.depth)

    async def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="advisor-generate", daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        """After uvicorn has drained the requests in flight: the worker finishes what it holds and exits."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join)

    def submit(self, job: Job) -> None:
        """Queue a job; raises asyncio.QueueFull when `max_queue` jobs are already waiting."""
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                raise asyncio.QueueFull
            self.waiting.append(job)
            self.wake.notify()

    # -- the worker thread

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.waiting and not self.batch.jobs and not self.stopping:
                    self.wake.wait()
                if self.stopping and not self.waiting and not self.batch.jobs:
                    return
            if not self.batch.jobs:  # idle until now: give requests arriving together a moment to join
                time.sleep(max(0.0, self.waiting[0].queued_at + self.max_wait - time.perf_counter()))
            admitted = self._admit()
            try:
                with torch.inference_mode():
                    if not self.local:
                        self._answer_whole(admitted)
                        continue
                    if admitted:
                        self._prefill(admitted)
                    if self.batch.jobs:
                        self._step()
            except Exception as e:  # noqa: BLE001 - one failure must not stop the server
                log.exception("generation failed")
                for job in self.batch.jobs + [j for j in admitted if j not in self.batch.jobs]:
                    self._fail(job, 500, f"internal error: {type(e).__name__}", "internal_error")
                self.batch.keep([])

    def _admit(self) -> list[Job]:
        """Waiting jobs that fit in the batch, prompts built; the expired and the gone leave the queue."""
        now, taken = time.perf_counter(), []
        with self.wake:
            for job in list(self.waiting):
                if job.cancelled.is_set():
                    self.waiting.remove(job)
                    self._cancel(job)
                elif now - job.queued_at > self.queue_timeout:
                    self.waiting.remove(job)
                    self.metrics.count("queue_timeout")
                    job.send(Event("error", f"server busy: waited {self.queue_timeout:g} s in the queue without "
                                            "a place in the batch (advisor serve --queue-timeout); retry shortly",
                                   status=503, code="queue_timeout"))
            while self.waiting and len(self.batch.jobs) + len(taken) < self.max_batch:
                taken.append(self.waiting.popleft())
        ready = []
        for job in taken:
            job.started_at = time.perf_counter()
            try:
                job.messages = self.prompt(job.messages)
                n = self.generator.prompt_tokens(job.messages)
                if n + job.sampling.max_tokens > self.generator.context_window:
                    raise PromptError(f"the prompt needs {n} tokens; with max_tokens {job.sampling.max_tokens} that "
                                      f"exceeds the {self.generator.display_name} window of "
                                      f"{self.generator.context_window}")
            except PromptError as e:
                self.metrics.count("bad_request")
                job.send(Event("error", str(e), status=400, code="context_length_exceeded", param="messages"))
                continue
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
                log.exception("building the prompt failed")
                self._fail(job, 500, f"internal error: {type(e).__name__}", "internal_error")
                continue
            job.prompt_tokens = n
            s = job.sampling
            if s.temperature > 0:
                job.rng = torch.Generator().manual_seed(s.seed if s.seed is not None else secrets.randbits(63))
            job.send(Event("start"))
            ready.append(job)
        return ready

    def _cancel(self, job: Job) -> None:
        """The client has gone: its row or place in the queue is dropped, and anything still waiting on it ends."""
        self.metrics.count("cancelled")
        job.send(Event("error", "client disconnected", status=499, code="cancelled"))

    def _fail(self, job: Job, status: int, message: str, code: str) -> None:
        self.metrics.count("generation_timeout" if code == "generation_timeout" else "error")
        job.send(Event("error", message, status=status, code=code))

    def _prefill(self, jobs: list[Job]) -> None:
        """The new jobs' prompts in one forward (a shared prefix from the generator's cache), then they join."""
        cache, mask, logits = self.generator.prefill([self.generator.chat_ids(j.messages) for j in jobs])
        self.batch.join(jobs, cache, mask)
        self._advance(jobs, logits)

    def _step(self) -> None:
        """One decode step: every running row's last token in, one new token per row out."""
        b = self.batch
        last = torch.tensor([[j.tokens[-1]] for j in b.jobs], device=b.mask.device)
        b.mask = torch.cat([b.mask, torch.ones_like(last)], dim=1)
        out = self.generator.model(input_ids=last, attention_mask=b.mask, position_ids=b.mask.sum(1, keepdim=True) - 1,
                                   cache=b.cache, use_cache=True)
        self.metrics.steps.inc()
        self.metrics.step_rows.inc(len(b.jobs))
        self._advance(b.jobs, out.logits[:, -1, :])

    def _advance(self, jobs: list[Job], logits: torch.Tensor) -> None:
        """Sample each row's next token, stream its text, and let the rows that are done leave the batch."""
        logits = logits.float().cpu()
        now = time.perf_counter()
        done: set[int] = set()
        for row, job in enumerate(jobs):
            if job.cancelled.is_set():
                self._cancel(job)
                done.add(id(job))
                continue
            if now - job.started_at > self.generation_timeout:
                self._fail(job, 504, f"generation took over {self.generation_timeout:g} s "
                                     "(advisor serve --generation-timeout)", "generation_timeout")
                done.add(id(job))
                continue
            token = sample(logits[row], job.sampling, job.rng)
            job.first_token_at = job.first_token_at or now
            job.tokens.append(token)
            if token in self.stop_ids:
                self._finish(job, "stop", self._text(job))
                done.add(id(job))
                continue
            s = job.sampling
            if not (job.stream or s.stop) and len(job.tokens) < s.max_tokens:
                continue
            text = self._text(job)
            cut = stop_at(text, s.stop)
            if cut is not None:
                self._finish(job, "stop", text[:cut].rstrip())
                done.add(id(job))
            elif len(job.tokens) >= s.max_tokens:
                self._finish(job, "length", text)
                done.add(id(job))
            elif job.stream:
                self._stream(job, streamable(text, s.stop))
        if done:
            self.batch.keep([i for i, j in enumerate(self.batch.jobs) if id(j) not in done])

    def _text(self, job: Job) -> str:
        """The row's answer so far, as the final answer is given (special tokens skipped, stripped)."""
        return self.generator.tokenizer.decode(job.tokens, skip_special_tokens=True).strip()

    def _stream(self, job: Job, text: str) -> None:
        """Send the part of `text` not sent yet (pieces concatenate to the answer)."""
        if len(text) > len(job.sent) and text.startswith(job.sent):
            job.send(Event("delta", text[len(job.sent):]))
            job.sent = text

    def _finish(self, job: Job, reason: str, text: str) -> None:
        g = Generation(text, job.prompt_tokens, len(job.tokens), time.perf_counter() - job.started_at)
        self._report(job, g, reason)

    def _report(self, job: Job, g: Generation, reason: str) -> None:
        if job.stream:
            self._stream(job, g.text)
        self.metrics.finished(job, g, reason)
        job.send(Event("done", generation=g, finish_reason=reason))

    def _answer_whole(self, jobs: list[Job]) -> None:
        """An endpoint-backed strategy: the endpoint batches; each answer arrives whole, stop strings cut here."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            if job.sampling.top_p != 1.0:
                self.metrics.count("bad_request")
                job.send(Event("error", "top_p is not forwarded to this strategy's endpoint; leave it at 1",
                               status=400, code="unsupported_parameter", param="top_p"))
            else:
                groups.setdefault(job.group, []).append(job)
        for (limit, temperature, _, seed), group in groups.items():
            answers = self.generator.complete([j.messages for j in group], limit, batch_size=len(group),
                                              temperature=temperature, seed=seed or 0, use_cache=False)
            for job, g in zip(group, answers):
                job.first_token_at = time.perf_counter()
                cut = stop_at(g.text, job.sampling.stop)
                if cut is not None:
                    g = Generation(g.text[:cut].rstrip(), g.prompt_tokens, g.completion_tokens, g.seconds)
                self._report(job, g, "length" if cut is None and g.completion_tokens >= limit else "stop")


def sample(logits: torch.Tensor, s: Sampling, rng: torch.Generator | None) -> int:
    """One token from one row's logits: greedy at temperature 0, else temperature and nucleus (top_p) sampling."""
    if s.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        probs, order = probs.sort(descending=True)
        probs[(probs.cumsum(-1) - probs) >= s.top_p] = 0  # keep the smallest head whose mass reaches top_p
        return int(order[torch.multinomial(probs, 1, generator=rng)])
    return int(torch.multinomial(probs, 1, generator=rng))
