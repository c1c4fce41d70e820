"""`advisor serve` as OpenAI clients use it: the real `openai` SDK against a real server on 127.0.0.1.

The run's few-shot row is served by `advisor serve` in a subprocess (as a user starts it);
the limit tests serve the session's embedded model from a uvicorn thread, so they
share its weights instead of loading another copy.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from openai import OpenAI

from advisor.batching import Job, RowStreamer
from advisor.serve import Limits, ServeError, Served, build_app, check_exposure
from tests.conftest import advisor
from tests.test_endpoint import free_port, start_advisor, stop

QUESTIONS = ["How much is the Zephyr Kettle?", "What is the return window?", "Thank you so much!", "Good morning",
             "How many slots does the toaster have?", "Do you ship abroad?", "Where is my order?",
             "Can I talk to a person?"]


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def metrics(base: str) -> dict[str, float]:
    """GET /metrics parsed from the Prometheus text format: {'name{labels}': value}."""
    text = httpx.get(f"{base}/metrics").text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def server(serve_run):
    port = free_port()
    proc = start_advisor("serve", str(serve_run), "--strategy", "few-shot", "--port", str(port),
                         ready_url=f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}"
    err = stop(proc)
    assert "stopped" in err and "Traceback" not in err, err[-2000:]


def client(base: str) -> OpenAI:
    return OpenAI(base_url=f"{base}/v1", api_key="not-needed-on-localhost", max_retries=0, timeout=300)


def test_plain_and_streamed_answers_agree(server):
    c = client(server)
    plain = c.chat.completions.create(model="few-shot", messages=ask(QUESTIONS[0]), max_tokens=16, temperature=0)
    text = plain.choices[0].message.content
    assert text and plain.object == "chat.completion" and plain.model == "few-shot"
    assert plain.usage.prompt_tokens > 50  # the few-shot prompt, not just the question
    assert 0 < plain.usage.completion_tokens <= 16
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    chunks = list(c.chat.completions.create(model="few-shot", messages=ask(QUESTIONS[0]), max_tokens=16,
                                            temperature=0, stream=True, stream_options={"include_usage": True}))
    assert {ch.object for ch in chunks} == {"chat.completion.chunk"} and len({ch.id for ch in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [ch.choices[0].delta.content for ch in chunks[1:-2]]
    assert len(pieces) > 1 and all(pieces)  # streamed in pieces, not in one
    assert "".join(pieces) == text  # greedy: the pieces concatenate to the non-streamed answer
    assert [ch.choices[0].finish_reason for ch in chunks[:-1]] == [None] * (len(chunks) - 2) + [
        plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()

    # The wire format: event-stream, and `data: [DONE]` last; no usage chunk unless asked for.
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=300,
                      json={"messages": ask(QUESTIONS[0]), "max_tokens": 16, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert '"usage"' not in "".join(events)


def test_concurrent_requests_are_batched(server):
    c = client(server)
    before = metrics(server)

    def one(q):
        return c.chat.completions.create(model="few-shot", messages=ask(q), max_tokens=12, temperature=0)

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        answers = list(pool.map(one, QUESTIONS))
    after = metrics(server)
    assert all(a.choices[0].message.content and 0 < a.usage.completion_tokens <= 12 for a in answers)
    assert after['advisor_requests_total{outcome="ok"}'] - before['advisor_requests_total{outcome="ok"}'] == 8
    assert after["advisor_generated_requests_total"] - before["advisor_generated_requests_total"] == 8
    calls = after["advisor_generation_calls_total"] - before["advisor_generation_calls_total"]
    assert 1 <= calls < 8, f"8 concurrent requests took {calls} generation calls"
    assert after["advisor_completion_tokens_total"] - before["advisor_completion_tokens_total"] == sum(
        a.usage.completion_tokens for a in answers)
    assert after["advisor_request_latency_seconds_count"] - before["advisor_request_latency_seconds_count"] == 8
    assert after['advisor_request_latency_seconds{quantile="0.95"}'] > 0 and after["advisor_queue_depth"] == 0
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["model"] == "few-shot"


# ------------------------------------------------------------ limits, on the session's model


@contextmanager
def running(served: Served, limits: Limits = Limits()):
    """A real uvicorn server on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    app = build_app(served, limits=limits)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="module")
def plain(generator) -> Served:
    return Served("plain", generator.display_name, generator, lambda messages: messages, 32)


def test_client_disconnect_stops_generation(plain):
    with running(plain) as base:
        body = {"messages": ask("Write a very long story about a dragon who learns to bake bread."),
                "max_tokens": 400, "stream": True}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break  # the first piece of text: hang up
        deadline = time.time() + 120
        while metrics(base)['advisor_requests_total{outcome="cancelled"}'] < 1:
            assert time.time() < deadline, "the cancelled request never finished"
            time.sleep(0.2)
        m = metrics(base)
        assert m["advisor_completion_tokens_total"] < 100, m  # stopped long before its 400 tokens
        assert m['advisor_requests_total{outcome="ok"}'] == 0
        again = httpx.post(f"{base}/v1/chat/completions", json={"messages": ask("Hi"), "max_tokens": 4}, timeout=300)
        assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] <= 4


def test_full_queue_is_503_and_limits_are_400_413(plain):
    limits = Limits(max_tokens=64, max_body_bytes=2000, max_batch=1, max_queue=1)
    with running(plain, limits) as base:
        url = f"{base}/v1/chat/completions"
        big = httpx.post(url, json={"messages": ask("Hi"), "max_tokens": 65}, timeout=60)
        assert big.status_code == 400 and "max_tokens 65 is over this server's limit of 64" in big.text
        long_body = {"messages": ask("x" * 3000)}
        assert httpx.post(url, json=long_body).status_code == 413
        chunked = httpx.post(url, content=iter([b'{"messages": [{"role": "user", "content": "', b"y" * 3000, b'"}]}']))
        assert chunked.status_code == 413 and "over 2000 bytes" in chunked.text  # no content-length: counted

        # One generating, one queued: the others are turned away with 503 and Retry-After.
        def post(i):
            return httpx.post(url, json={"messages": ask(f"Tell me story number {i}."), "max_tokens": 24}, timeout=1800)

        with ThreadPoolExecutor(5) as pool:
            replies = list(pool.map(post, range(5)))
        codes = sorted(r.status_code for r in replies)
        busy = [r for r in replies if r.status_code == 503]
        assert codes.count(200) >= 2 and busy and set(codes) <= {200, 503}, codes
        assert all(r.headers["retry-after"] == "1" and "server busy" in r.text for r in busy)
        m = metrics(base)
        assert m['advisor_requests_total{outcome="rejected"}'] == len(busy)
        assert m['advisor_requests_total{outcome="bad_request"}'] == 1  # max_tokens (a 413 is never parsed)


def test_only_loopback_without_a_key():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, None)
    check_exposure("0.0.0.0", "SOME_KEY_VAR")
    with pytest.raises(ServeError, match="--host 0.0.0.0 exposes the server.*--api-key-env"):
        check_exposure("0.0.0.0", None)
    r = advisor("serve", "--model", "embedded", "--host", "0.0.0.0")
    assert r.returncode == 2 and "--api-key-env" in r.stderr and "loading" not in r.stderr  # refused before loading
    assert "Traceback" not in r.stderr


def test_streamed_pieces_never_split_a_character(generator):
    """Token by token through the streamer: multi-byte characters arrive whole, pieces add up to the answer."""
    text = "Café ☕ costs 3€ — naïve 日本語 🐉!"
    ids = generator.tokenizer(text, add_special_tokens=False)["input_ids"]
    loop = asyncio.new_event_loop()
    try:
        job = Job(ask("x"), 100, 0.0, 0, True, loop)
        streamer = RowStreamer(generator.tokenizer, [job])
        streamer.put(None)  # generate hands over the prompt first
        import torch

        for t in ids:
            streamer.put(torch.tensor([t]))
        loop.run_until_complete(asyncio.sleep(0))
        pieces = []
        while not job.events.empty():
            pieces.append(job.events.get_nowait().text)
    finally:
        loop.close()
    assert "".join(pieces) == text and len(pieces) > 5
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) < len(ids)  # held back while a character was incomplete (or only whitespace had come)
