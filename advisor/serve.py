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
GET /health and GET /metrics (Prometheus, vLLM's metric names). The request contract
follows OpenAI's API reference and vLLM's server: what this server cannot honour
(`n` > 1, tools, JSON modes, logprobs, penalties) is refused with a 400 naming the
field, never silently ignored, and every error has OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`. Requests are scheduled step by step
(advisor.batching). Safe by default: bound to 127.0.0.1; any other interface needs an
API key from an environment variable; request bodies and `max_tokens` are capped.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import time
import uuid
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from advisor.batching import Batcher, Event, Job, PromptError, Sampling

MAX_BODY_BYTES = 1 << 20  # a chat request is text; 1 MiB is generous and stops memory abuse
MAX_TOKENS_CAP = 1024  # the most tokens one request may ask for (--max-tokens-cap)
MAX_STOPS = 4  # OpenAI's limit on `stop` sequences
log = logging.getLogger("advisor.serve")


class ServeError(Exception):
    pass


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_calls, ...: accepted, not used
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat-completion parameters (defaults and ranges as its API reference gives them).

    Parameters this server cannot honour are declared so that `refused()` can name them;
    others it has no use for (user, metadata, store, ...) are accepted and ignored, as vLLM does.
    """

    model_config = ConfigDict(extra="ignore")
    model: str | None = None  # OpenAI requires it; like vLLM, absent means the served model
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)  # None: OpenAI's default, 1
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None


class RequestError(Exception):
    """A request the server answers with an OpenAI-shaped error: status, message, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def refused(req: ChatRequest) -> RequestError | None:
    """The first parameter set to something this server does not do, as a 400 naming it (vLLM does these; we don't)."""
    fmt = (req.response_format or {}).get("type", "text")
    checks = [
        ("n", (req.n or 1) > 1, f"n={req.n}: this server returns one choice per request; send {req.n} requests"),
        ("response_format", fmt != "text", f"response_format {fmt!r} is not supported (only 'text')"),
        ("tools", bool(req.tools), "tools (function calling) are not supported"),
        ("tool_choice", req.tool_choice not in (None, "none", "auto"), "tool_choice needs tools, not supported"),
        ("logprobs", bool(req.logprobs) or bool(req.top_logprobs), "logprobs are not supported"),
        ("presence_penalty", bool(req.presence_penalty), "presence_penalty is not supported; leave it at 0"),
        ("frequency_penalty", bool(req.frequency_penalty), "frequency_penalty is not supported; leave it at 0"),
        ("logit_bias", bool(req.logit_bias), "logit_bias is not supported"),
    ]
    for param, bad, message in checks:
        if bad:
            return RequestError(400, message, param, "unsupported_parameter")
    return None


def plain_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as the chat template takes them: text parts joined, `developer` as `system`.

    Raises RequestError for what a text model cannot read (image, audio or file parts) or
    a tool message (tools are refused).
    """
    out = []
    for i, m in enumerate(messages):
        if m.role == "tool":
            raise RequestError(400, f"messages[{i}]: role 'tool' needs tools, which this server does not support",
                               f"messages[{i}].role", "unsupported_parameter")
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind != "text" or not isinstance(part.get("text"), str):
                    raise RequestError(400, f"messages[{i}].content[{j}]: content parts of type {kind!r} are not "
                                            "supported; this model reads text only (send {'type': 'text', 'text': "
                                            "...} parts or a string)", f"messages[{i}].content[{j}].type",
                                       "unsupported_content_type")
                texts.append(part["text"])
            content = "\n".join(texts)  # as vLLM joins a message's text parts
        out.append({"role": "system" if m.role == "developer" else m.role, "content": content or ""})
    return out


def sampling(req: ChatRequest, default_max_tokens: int, cap: int) -> Sampling:
    """The request's sampling parameters, checked against the server's limits."""
    limit = req.max_completion_tokens or req.max_tokens or default_max_tokens
    if limit > cap:
        field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise RequestError(400, f"{field} {limit} is over this server's limit of {cap} (advisor serve --max-tokens-cap)",
                           field, "max_tokens_too_large")
    stops = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    if len(stops) > MAX_STOPS or not all(stops):
        raise RequestError(400, f"stop takes at most {MAX_STOPS} non-empty strings", "stop", "invalid_value")
    temperature = 1.0 if req.temperature is None else req.temperature
    return Sampling(limit, temperature, 1.0 if req.top_p is None else req.top_p, req.seed, stops)


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
    queue_timeout_s: float = 60.0  # a request waiting longer for a place in the batch gets 503 + Retry-After
    generation_timeout_s: float = 300.0  # a request generating longer gets 504


ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error"}


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           headers: dict | None = None) -> JSONResponse:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


def _event_error(event: Event, retry_after: int) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if event.status == 503 else None
    return _error(event.status, event.text, event.param, event.code, headers)


def _where(loc: tuple) -> str:
    """A pydantic error location as a field path: ('body', 'messages', 0, 'role') -> messages[0].role."""
    out = ""
    for p in loc:
        if p == "body":
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


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
        too_big = _error(413, f"request body over {self.limit} bytes", code="request_too_large")
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


class KeyCheck:
    """ASGI middleware: every path but /health needs `Authorization: Bearer KEY`, else 401.

    Plain ASGI rather than an `@app.middleware("http")` function: that wrapper (Starlette's
    BaseHTTPMiddleware) relays `receive`, and a client's disconnect must reach the handler.
    """

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope.get("headers") or []).get(b"authorization", b"").removeprefix(b"Bearer ").strip()
            if not secrets.compare_digest(given, self.key):
                return await _error(401, "missing or wrong API key", code="invalid_api_key")(scope, receive, send)
        await self.app(scope, receive, send)


async def _hang_up(job: Job, receive) -> None:
    """Cancel the job once its client hangs up, so its row leaves the batch at the next step.

    A task beside the response: it sees the disconnect whether the client was waiting in
    the queue, for a whole answer, or mid-stream (an abandoned stream generator may be
    closed only when garbage collected). After the response is sent, uvicorn's receive
    reports a disconnect too, which finds the job already done.
    """
    while (await receive())["type"] != "http.disconnect":
        pass
    job.cancelled.set()


async def _last(job: Job) -> Event:
    """The job's final event: "done", or an "error" (the engine sends one for a cancelled job too)."""
    while (event := await job.next()).kind not in ("done", "error"):
        pass
    return event


def build_app(served: Served, api_key: str | None = None, on_stop: Callable[[], None] | None = None,
              limits: Limits = Limits()) -> FastAPI:
    batcher = Batcher(served.generator, served.prompt, served.model_id, limits.max_batch, limits.max_wait_ms,
                      limits.max_queue, limits.queue_timeout_s, limits.generation_timeout_s)
    created = int(time.time())
    retry_after = max(1, round(limits.queue_timeout_s / 10))

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()  # after uvicorn has drained the requests in flight
        served.close()
        if on_stop:
            on_stop()

    app = FastAPI(title="advisor serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(KeyCheck, key=api_key)  # added last: runs first, a 401 before a 413

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError):
        batcher.metrics.count("bad_request")
        err = exc.errors()[0] if exc.errors() else {}
        if err.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {err.get('ctx', {}).get('error', 'invalid')}",
                          code="invalid_json")
        where = _where(err.get("loc", ()))
        return _error(400, f"bad request body: {where or 'body'}: {err.get('msg', 'invalid')}", where or None,
                      "invalid_value")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            message, code = f"Invalid URL ({request.method} {request.url.path})", "not_found"
        elif exc.status_code == 405:
            message, code = f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return _error(exc.status_code, message, code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}", code="internal_error")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served.model_id, "running": batcher.running, "waiting": batcher.depth}

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(batcher.render_metrics(), media_type=CONTENT_TYPE_LATEST)

    card = {"id": served.model_id, "object": "model", "created": created, "owned_by": "advisor",
            "description": served.description}

    def unknown_model(name: str) -> JSONResponse:
        return _error(404, f"The model `{name}` does not exist; this server serves: {served.model_id}", "model",
                      "model_not_found")

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{name:path}")
    def model(name: str):
        return card if name == served.model_id else unknown_model(name)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        try:
            if req.model is not None and req.model != served.model_id:
                batcher.metrics.count("bad_request")
                return unknown_model(req.model)
            problem = refused(req)
            if problem is not None:
                raise problem
            messages = plain_messages(req.messages)
            if messages[-1]["role"] != "user":
                raise RequestError(400, "the last message must be the user's", f"messages[{len(messages) - 1}].role",
                                   "invalid_value")
            params = sampling(req, served.default_max_tokens, limits.max_tokens)
        except RequestError as e:
            batcher.metrics.count("bad_request")
            return _error(e.status, e.message, e.param, e.code)
        job = Job(messages, params, bool(req.stream), asyncio.get_running_loop())
        try:
            batcher.submit(job)
        except asyncio.QueueFull:
            batcher.metrics.count("rejected")
            return _error(503, f"server busy: {limits.max_queue} requests already queued; retry shortly "
                               "(advisor serve --max-queue)", code="queue_full", headers={"Retry-After": str(retry_after)})
        watch = asyncio.create_task(_hang_up(job, request.receive))
        streaming = False
        try:
            if req.stream:
                first = await job.next()  # "start" once it joins the batch, or an error
                if first.kind == "error":
                    return _event_error(first, retry_after)
                include_usage = bool(req.stream_options and req.stream_options.include_usage)
                streaming = True  # from here on _sse owns `watch`
                return StreamingResponse(_sse(job, watch, served.model_id, include_usage),
                                         media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            event = await _last(job)
        except asyncio.CancelledError:
            job.cancelled.set()
            raise
        finally:
            if not streaming:
                watch.cancel()
        if event.kind == "error":
            return _event_error(event, retry_after)
        g = event.generation
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": served.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                         "finish_reason": event.finish_reason}],
            "usage": _usage(g),
        }

    return app


def _usage(g) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


async def _sse(job: Job, watch: asyncio.Task, model_id: str, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: role, content pieces, finish_reason, [usage], [DONE].

    `watch` (see _hang_up) cancels the row if the client disconnects; it is stopped here once the stream ends.
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
            elif event.kind == "error":  # the status line has gone: the error travels as an event
                body = json.loads(_event_error(event, 1).body)
                yield f"data: {json.dumps(body)}\n\n"
                return
            else:
                yield chunk({}, event.finish_reason)
                if include_usage:
                    yield chunk({}, usage=_usage(event.generation), choices=False)
                yield "data: [DONE]\n\n"
                return
    finally:
        job.cancelled.set()  # a no-op once the answer is complete; stops the row if the client left
        watch.cancel()


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
