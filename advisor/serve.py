"""`advisor serve`: an OpenAI-compatible chat-completions server on localhost.

Two modes, one app:
- a finished run's strategy (`advisor serve RUN_DIR --strategy NAME`, default the
  recommended one): the strategy is rebuilt through its normal class, reusing the
  run's cached adapter and index (never training), and applied to the last user
  message of each request: its instructions, examples, retrieval and adapter;
- a plain model (`advisor serve --model embedded`): the request's messages as
  given, the way vLLM or TGI serve a model. The test suite and the sample task
  `data/support/hosted.yaml` use it as a stand-in for a hosted model.

POST /v1/chat/completions (non-streaming) and GET /v1/models, with OpenAI-shaped
`usage`. Requests are answered one at a time (one model, one adapter in memory).
"""
from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from advisor.models import Generation


class ServeError(Exception):
    pass


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other OpenAI parameters (top_p, n=1, ...) are accepted and ignored
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=5)
    seed: int | None = None
    stream: bool = False


@dataclass
class Served:
    """What the server answers with: a name for /v1/models and a function from request to Generation."""

    model_id: str
    answer: Callable[[ChatRequest], Generation]
    description: str


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


def build_app(served: Served, api_key: str | None = None, on_stop: Callable[[], None] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        yield
        if on_stop:
            on_stop()  # after uvicorn has finished the requests in flight

    app = FastAPI(title="advisor serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    lock = threading.Lock()

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        return _error(400, f"bad request body: {where or 'body'}: {err.get('msg', 'invalid')}")

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given, api_key):
                return _error(401, "missing or wrong API key", "authentication_error")
        return await call_next(request)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": served.model_id, "object": "model", "owned_by": "advisor",
                                            "description": served.description}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):  # a sync handler: FastAPI runs it in a worker thread
        if req.stream:
            return _error(400, "stream: true is not supported; send stream: false")
        if req.messages[-1].role != "user":
            return _error(400, "the last message must be the user's")
        from strategies.base import ContextTooLong

        try:
            with lock:
                g = served.answer(req)
        except ContextTooLong as e:
            return _error(400, str(e))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": served.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                         "finish_reason": "length" if g.completion_tokens >= _max_tokens(req, 10**9) else "stop"}],
            "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                      "total_tokens": g.prompt_tokens + g.completion_tokens},
        }

    return app


def _max_tokens(req: ChatRequest, default: int) -> int:
    return req.max_completion_tokens or req.max_tokens or default


def _sampling(req: ChatRequest) -> dict:
    # Every request is generated (no answer cache): a server's latency is what its clients measure.
    return {"temperature": req.temperature, "seed": req.seed or 0, "use_cache": False}


def plain_model(name: str, model_id: str | None, max_new_tokens: int = 256) -> Served:
    """A model served as is: the request's messages go through its chat template unchanged."""
    from advisor.models import Generator
    from advisor.run import quiet_libraries
    from strategies.base import ContextTooLong

    quiet_libraries()
    gen = Generator(name)

    def answer(req: ChatRequest) -> Generation:
        messages = [m.model_dump() for m in req.messages]
        limit = _max_tokens(req, max_new_tokens)
        n = gen.prompt_tokens(messages)
        if n + limit > gen.context_window:
            raise ContextTooLong(f"the prompt needs {n} tokens; with max_tokens {limit} that exceeds the "
                                 f"{gen.display_name} window of {gen.context_window}")
        return gen.complete([messages], limit, batch_size=1, **_sampling(req))[0]

    return Served(model_id or name, answer, gen.display_name)


def run_strategy(run_dir: Path, strategy: str | None, model_id: str | None, say: Callable[[str], None]) -> Served:
    """Rebuild a finished run's strategy from results.json and the task, reusing its adapter and index."""
    from advisor.backends import load_generators
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
    name = strategy or results.recommendation.strategy
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

    def answer(req: ChatRequest) -> Generation:
        a = strat.answer([req.messages[-1].content], temperature=req.temperature, seed=req.seed or 0,
                         max_new_tokens=_max_tokens(req, task.spec.generation.max_new_tokens),
                         use_cache=False)[0]
        return Generation(a.text, a.prompt_tokens, a.completion_tokens, a.seconds)

    return Served(model_id or name, answer, f"{name} ({strat.description}) on {row.model}")


def serve(served: Served, host: str, port: int, api_key_env: str | None, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn finishes the request in flight, then exits)."""
    import uvicorn

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ServeError(f"--api-key-env {api_key_env}: that environment variable is not set")
    app = build_app(served, key, on_stop=lambda: say("stopped"))
    say(f"serving {served.model_id} on http://{host}:{port}/v1 (POST /v1/chat/completions, GET /v1/models; "
        "Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
