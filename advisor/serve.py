"""`advisor serve`: an OpenAI-compatible chat-completions server, on localhost by default.

Two modes, one app:
- a finished run's strategy (`advisor serve RUN_DIR --strategy NAME`, default the
  recommended one): the strategy is rebuilt through its normal class, reusing the
  run's cached adapter and index (never training), and applied to the last user
  message of each request: its instructions, examples, retrieval and adapter;
- a plain model (`advisor serve --model embedded`): the request's messages as
  given, the way vLLM or TGI serve a model. The test suite and the sample task
  `data/support/hosted.yaml` use it as a stand-in for a hosted model.

POST /v1/chat/completions (streaming or not, OpenAI-shaped `usage`), GET /v1/models,
GET /health and GET /metrics (Prometheus text). Concurrent requests are batched
(advisor.batching). Safe by default: bound to 127.0.0.1; any other interface needs an
API key from an environment variable; request bodies and `max_tokens` are capped.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import time
import uuid
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from advisor.batching import Batcher, Event, Job, PromptError

MAX_BODY_BYTES = 1 << 20  # a chat request is text; 1 MiB is generous and stops memory abuse
MAX_TOKENS_CAP = 1024  # the most tokens one request may ask for (--max-tokens-cap)


class ServeError(Exception):
    pass


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other OpenAI parameters (top_p, n=1, ...) are accepted and ignored
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=5)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


@dataclass(frozen=True)
class Served:
    """What the server answers with: a name for /v1/models, the generator, and how a request becomes its prompt.

    `prompt` maps the request's messages to the conversation the generator sees and
    raises PromptError when that cannot fit; `close` releases what was loaded (an adapter).
    """

    model_id: str
    description: str
    generator: object  # a local advisor.models.Generator, or an EndpointGenerator for a hosted row
    prompt: Callable[[list[dict[str, str]]], list[dict[str, str]]]
    default_max_tokens: int
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Limits:
    max_tokens: int = MAX_TOKENS_CAP
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}}, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before it is read whole.

    A declared Content-Length is checked up front (the server never reads past it); a
    chunked body is read here up to the limit, then handed on.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = _error(413, f"request body over {self.limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                return await too_big(scope, receive, send)
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def build_app(served: Served, api_key: str | None = None, on_stop: Callable[[], None] | None = None,
              limits: Limits = Limits()) -> FastAPI:
    batcher = Batcher(served.generator, served.prompt, limits.max_batch, limits.max_wait_ms, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()  # after uvicorn has finished the requests in flight
        served.close()
        if on_stop:
            on_stop()

    app = FastAPI(title="advisor serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError):
        batcher.metrics.count("bad_request")
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        return _error(400, f"bad request body: {where or 'body'}: {err.get('msg', 'invalid')}")

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None and request.url.path != "/health":
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given, api_key):
                return _error(401, "missing or wrong API key", "authentication_error")
        return await call_next(request)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served.model_id, "queue_depth": batcher.depth}

    @app.get("/metrics")
    def metrics():
        return PlainTextResponse(batcher.metrics.render(batcher.depth), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": served.model_id, "object": "model", "owned_by": "advisor",
                                            "description": served.description}]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if req.messages[-1].role != "user":
            batcher.metrics.count("bad_request")
            return _error(400, "the last message must be the user's")
        limit = _max_tokens(req, served.default_max_tokens)
        if limit > limits.max_tokens:
            batcher.metrics.count("bad_request")
            return _error(400, f"max_tokens {limit} is over this server's limit of {limits.max_tokens} "
                               "(advisor serve --max-tokens-cap)")
        job = Job([m.model_dump() for m in req.messages], limit, req.temperature, req.seed or 0, req.stream,
                  asyncio.get_running_loop())
        try:
            batcher.submit(job)
        except asyncio.QueueFull:
            batcher.metrics.count("rejected")
            return _error(503, f"server busy: {limits.max_queue} requests already queued; retry shortly",
                          "server_error", headers={"Retry-After": "1"})
        try:
            first = await job.next()  # "start" once its batch begins, or an error
            if first.kind == "error":
                return _error(first.status, first.text, "invalid_request_error" if first.status < 500 else "server_error")
            if req.stream:
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                return StreamingResponse(_sse(job, served.model_id, include_usage), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            event = await job.next()
            while event.kind == "delta":
                event = await job.next()
        except asyncio.CancelledError:
            job.cancelled.set()
            raise
        if event.kind == "error":
            return _error(event.status, event.text, "server_error")
        g = event.generation
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": served.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                         "finish_reason": _finish_reason(g.completion_tokens, limit)}],
            "usage": _usage(g),
        }

    return app


def _finish_reason(completion_tokens: int, limit: int) -> str:
    return "length" if completion_tokens >= limit else "stop"


def _usage(g) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


async def _sse(job: Job, model_id: str, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: role, content pieces, finish_reason, [usage], [DONE].

    A client that disconnects cancels this generator; its row then stops generating.
    """
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict, finish_reason: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []}
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            event: Event = await job.next()
            if event.kind == "delta":
                yield chunk({"content": event.text})
            elif event.kind == "error":
                yield f"data: {json.dumps({'error': {'message': event.text, 'type': 'server_error'}})}\n\n"
                return
            else:
                g = event.generation
                yield chunk({}, _finish_reason(g.completion_tokens, job.max_tokens))
                if include_usage:
                    yield chunk({}, usage=_usage(g), choices=False)
                yield "data: [DONE]\n\n"
                return
    finally:
        job.cancelled.set()  # a no-op once the answer is complete; stops the row if the client left


def _max_tokens(req: ChatRequest, default: int) -> int:
    return req.max_completion_tokens or req.max_tokens or default


def plain_model(name: str, model_id: str | None, max_new_tokens: int = 256) -> Served:
    """A model served as is: the request's messages go through its chat template unchanged."""
    from advisor.models import Generator
    from advisor.run import quiet_libraries

    quiet_libraries()
    gen = Generator(name)
    return Served(model_id or name, gen.display_name, gen, lambda messages: messages, max_new_tokens)


@dataclass(frozen=True)
class Rebuilt:
    """A finished run's strategy, prepared again: what serving and exporting start from."""

    name: str
    strategy: object  # a strategies.Strategy, prepared
    generator: object
    row: object  # the strategy's row of results.json (advisor.results.StrategyResult)
    task: object


def load_strategy(run_dir: Path, strategy: str | None, say: Callable[[str], None]) -> Rebuilt:
    """Rebuild a finished run's strategy from results.json and the task, reusing its adapter and index."""
    from advisor.backends import load_generators
    from advisor.budget import apply_budget
    from advisor.kinds import Family
    from advisor.results import ResultsError, load_results
    from advisor.run import build_context, quiet_libraries
    from advisor.task import TaskError, load_task
    from advisor.training import AdapterMissing
    from strategies import registry

    try:
        results = load_results(run_dir)
    except ResultsError as e:
        raise ServeError(str(e)) from None
    rec = results.recommendation
    if strategy is None and rec.status != "recommended":
        ran = ", ".join(s.name for s in results.strategies)
        raise ServeError(f"{run_dir}: the run recommends no strategy (not enough evidence); name one with "
                         f"--strategy (it has: {ran})")
    name = strategy or rec.strategy
    row = results.strategy(name)
    if row is None:
        ran = ", ".join(s.name for s in results.strategies)
        raise ServeError(f"{run_dir}: strategy {name!r} is not in this run (it has: {ran})")
    root = results.task.root
    try:
        task = load_task(root)
    except TaskError as e:
        hint = "" if Path(root).is_absolute() else " (a relative path: run serve from where `advisor run` ran)"
        raise ServeError(f"the run's task folder {root} cannot be loaded{hint}: {e}") from None
    if results.run.budget is not None:  # the settings the run's budget filled, so the same adapter is found
        task, _ = apply_budget(task, results.run.budget.name)
    changed = sorted(p for p, h in results.task.files.items() if task.files.get(p) != h)
    if changed:
        say(f"warning: task files changed since the run: {', '.join(changed[:5])}")
    gname = task.spec.models.for_strategy(name)[0]
    say(f"loading {name} from {run_dir}: {row.model}"
        + (f", adapter {row.setup.adapter}" if row.setup.adapter else "")
        + (", retrieval index" if Family(row.family).retrieves else "") + " ...")
    quiet_libraries()
    cls = registry()[name]
    loaded = load_generators(task.spec.models, [name], endpoints=True) | load_generators(
        task.spec.models, [name], endpoints=False)
    # Serving never trains: a missing adapter is an error.
    ctx = build_context(task, results.run.seed, [cls], loaded, Path(run_dir), reuse_only=True)
    gen = ctx.generator_for(name)
    strat = cls(ctx)
    try:
        strat.prepare()
    except AdapterMissing as e:
        raise ServeError(str(e)) from None
    return Rebuilt(name, strat, gen, row, task)


def run_strategy(run_dir: Path, strategy: str | None, model_id: str | None, say: Callable[[str], None]) -> Served:
    """Serve a finished run's strategy: its prompt recipe on each request, its adapter loaded once."""
    from strategies.base import ContextTooLong

    r = load_strategy(run_dir, strategy, say)
    strat, gen = r.strategy, r.generator

    def prompt(messages: list[dict[str, str]]) -> list[dict[str, str]]:
        try:
            return strat.prompt(messages[-1]["content"])
        except ContextTooLong as e:
            raise PromptError(str(e)) from None

    # The adapter stays loaded while the server runs (a strategy's answer() loads it per call).
    stack = ExitStack()
    stack.enter_context(gen.adapter(strat.adapter_path))
    return Served(model_id or r.name, f"{r.name} ({strat.description}) on {r.row.model}",
                  gen, prompt, r.task.spec.generation.max_new_tokens, stack.close)


def check_exposure(host: str, api_key_env: str | None) -> None:
    """Anything but this machine's loopback needs a key: a model server on the network is an open door."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not api_key_env:
        raise ServeError(f"--host {host} exposes the server beyond this machine; give --api-key-env NAME "
                         "(clients then send `Authorization: Bearer $NAME`)")


def serve(served: Served, host: str, port: int, api_key_env: str | None, say: Callable[[str], None],
          limits: Limits = Limits()) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn finishes the requests in flight, then exits)."""
    import uvicorn

    check_exposure(host, api_key_env)
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ServeError(f"--api-key-env {api_key_env}: that environment variable is not set")
    app = build_app(served, key, on_stop=lambda: say("stopped"), limits=limits)
    say(f"serving {served.model_id} on http://{host}:{port}/v1 (POST /v1/chat/completions, GET /v1/models, "
        f"/health, /metrics; batches up to {limits.max_batch}; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
