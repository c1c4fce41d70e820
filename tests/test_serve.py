"""`advisor serve` as OpenAI clients use it: the real `openai` SDK against a real server on 127.0.0.1.

The run's few-shot row is served by `advisor serve` in a subprocess (as a user starts it);
the limit tests serve the session's embedded model from a uvicorn thread, so they
share its weights instead of loading another copy.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import openai
import pytest
from openai import OpenAI

from advisor.batching import streamable
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
    return OpenAI(base_url=f"{base}/v1", api_key="not-needed-on-localhost", max_retries=0, timeout=1800)


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

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert all(a.choices[0].message.content and 0 < a.usage.completion_tokens <= 12 for a in answers)
    assert grew('advisor:requests_total{outcome="ok"}') == 8
    assert sum(grew(f'vllm:request_success_total{{finished_reason="{r}",model_name="few-shot"}}')
               for r in ("stop", "length")) == 8
    assert grew('vllm:e2e_request_latency_seconds_count{model_name="few-shot"}') == 8
    assert grew('vllm:time_to_first_token_seconds_count{model_name="few-shot"}') == 8
    assert grew('vllm:generation_tokens_total{model_name="few-shot"}') == sum(a.usage.completion_tokens for a in answers)
    assert grew('vllm:prompt_tokens_total{model_name="few-shot"}') == sum(a.usage.prompt_tokens for a in answers)
    rows, steps = grew("advisor:decode_rows_total"), grew("advisor:decode_steps_total")
    assert rows / steps > 2, f"8 concurrent requests ran {rows} rows in {steps} steps: not batched"
    assert after['vllm:num_requests_running{model_name="few-shot"}'] == 0
    assert after['vllm:num_requests_waiting{model_name="few-shot"}'] == 0
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


@pytest.fixture(scope="module")
def plain_base(plain):
    """One plain-model server for the contract tests."""
    with running(plain) as base:
        yield base


def test_content_parts_and_the_developer_role(plain_base):
    c = client(plain_base)

    def answer(messages) -> str:
        return c.chat.completions.create(model="plain", messages=messages, max_tokens=6,
                                         temperature=0).choices[0].message.content

    as_string = answer([{"role": "system", "content": "You answer in French."}, *ask("Name a fruit and a colour.")])
    as_parts = answer([{"role": "developer", "content": [{"type": "text", "text": "You answer in French."}]},
                       {"role": "user", "content": [{"type": "text", "text": "Name a fruit"},
                                                    {"type": "text", "text": "and a colour."}]}])
    joined = answer([{"role": "system", "content": "You answer in French."}, *ask("Name a fruit\nand a colour.")])
    assert as_parts == joined  # text parts joined with a newline, developer read as system
    assert as_string  # (a different prompt: the same words on one line)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="plain", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, image]}], max_tokens=4)
    assert e.value.status_code == 400 and e.value.code == "unsupported_content_type"
    assert e.value.param == "messages[0].content[1].type" and "'image_url'" in e.value.message


def test_model_is_validated_and_listed(plain_base):
    c = client(plain_base)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-4o", messages=ask("Hi"), max_tokens=2)
    assert e.value.status_code == 404 and e.value.code == "model_not_found" and e.value.param == "model"
    assert "gpt-4o" in e.value.message and "serves: plain" in e.value.message
    [card] = c.models.list().data
    assert (card.id, card.object, card.owned_by) == ("plain", "model", "advisor") and card.created > 1.7e9
    assert c.models.retrieve("plain").id == "plain"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("other")


def test_stop_and_top_p_are_honoured(plain_base):
    c = client(plain_base)
    question = ask("What is the capital of France? Answer in one sentence.")
    greedy = c.chat.completions.create(model="plain", messages=question, max_tokens=12, temperature=0)
    text = greedy.choices[0].message.content
    word = text.split()[3]  # a word in the middle of the answer
    cut = c.chat.completions.create(model="plain", messages=question, max_tokens=12, temperature=0, stop=[word, "@@"])
    assert cut.choices[0].message.content == text[:text.index(word)].rstrip()
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens < greedy.usage.completion_tokens
    chunks = list(c.chat.completions.create(model="plain", messages=question, max_tokens=12, temperature=0, stop=word,
                                            stream=True))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert streamed == cut.choices[0].message.content and chunks[-1].choices[0].finish_reason == "stop"
    # top_p: a nucleus this small holds only the most likely token, so sampling at temperature 1 is greedy.
    narrow = c.chat.completions.create(model="plain", messages=question, max_tokens=12, temperature=1, top_p=1e-6)
    assert narrow.choices[0].message.content == text


def test_unsupported_parameters_are_refused_by_name(plain_base):
    c = client(plain_base)
    for kwargs, param in (({"n": 2}, "n"), ({"response_format": {"type": "json_object"}}, "response_format"),
                          ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
                          ({"logprobs": True}, "logprobs"), ({"presence_penalty": 0.5}, "presence_penalty"),
                          ({"temperature": 2.5}, "temperature"), ({"top_p": 0}, "top_p"),
                          ({"stop": ["a", "b", "c", "d", "e"]}, "stop")):
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="plain", messages=ask("Hi"), max_tokens=2, **kwargs)
        assert e.value.status_code == 400 and e.value.param == param, (kwargs, e.value.body)
    ok = c.chat.completions.create(model="plain", messages=ask("Hi"), max_tokens=2, temperature=2, n=1,
                                   response_format={"type": "text"})
    assert ok.choices[0].message.content is not None and ok.usage.completion_tokens <= 2


def test_seeds_fresh_randomness_and_batch_independence(plain_base):
    c = client(plain_base)
    question = ask("Invent a name for a new colour and describe it.")

    def sampled(seed=None, q=question, max_tokens=8) -> str:
        return c.chat.completions.create(model="plain", messages=q, max_tokens=max_tokens, seed=seed,
                                         ).choices[0].message.content  # temperature: OpenAI's default, 1

    unseeded = {sampled() for _ in range(3)}
    assert len(unseeded) > 1, unseeded  # no seed: fresh randomness each time
    alone = sampled(seed=1234)
    # The same seeded request among different companions (other prompts, lengths, seeds), joining mid-batch.
    companions = [(None, ask("Write a long poem about the sea."), 24), (7, ask("Hi"), 3),
                  (None, ask("List ten animals."), 12)]
    with ThreadPoolExecutor(5) as pool:
        others = [pool.submit(sampled, s, q, m) for s, q, m in companions]
        time.sleep(0.3)
        in_batch = [pool.submit(sampled, 1234) for _ in range(2)]
        assert [f.result() for f in in_batch] == [alone, alone]
        assert all(f.result() is not None for f in others)
    assert sampled(seed=1235) != alone


def test_errors_have_openai_shape(plain_base, generator):
    def shape(r: httpx.Response, status: int) -> dict:
        body = r.json()
        assert r.status_code == status and set(body) == {"error"}, r.text
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"], body
        return body["error"]

    url = f"{plain_base}/v1/chat/completions"
    assert shape(httpx.get(f"{plain_base}/v1/nowhere"), 404)["message"] == "Invalid URL (GET /v1/nowhere)"
    assert shape(httpx.get(url), 405)["code"] == "method_not_allowed"
    assert shape(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)[
        "code"] == "invalid_json"
    err = shape(httpx.post(url, json={"messages": [{"role": "robot", "content": "hi"}]}), 400)
    assert err["param"] == "messages[0].role" and err["type"] == "invalid_request_error"
    assert shape(httpx.post(url, json={"messages": ask("x" * (1 << 20))}), 413)["code"] == "request_too_large"

    def broken(messages):
        raise ValueError("a bug in a strategy")

    with running(Served("broken", "x", generator, broken, 8)) as base:
        err = shape(httpx.post(f"{base}/v1/chat/completions", json={"messages": ask("Hi")}), 500)
        assert err["type"] == "server_error" and err["code"] == "internal_error" and "ValueError" in err["message"]


# ------------------------------------------------------------ under load


def test_64_concurrent_clients_and_metrics_count_them(plain):
    with running(plain, Limits(max_batch=64)) as base:
        c = client(base)

        def one(i):
            return c.chat.completions.create(model="plain", messages=ask(QUESTIONS[i % len(QUESTIONS)]),
                                             max_tokens=4, temperature=0)

        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(one, range(64)))
        m = metrics(base)
    label = '{model_name="plain"}'
    assert all(0 < a.usage.completion_tokens <= 4 for a in answers)
    assert m['advisor:requests_total{outcome="ok"}'] == 64
    assert sum(v for k, v in m.items() if k.startswith("vllm:request_success_total")) == 64
    for name in ("e2e_request_latency_seconds", "time_to_first_token_seconds", "request_queue_time_seconds"):
        assert m[f"vllm:{name}_count{label}"] == 64
        assert m[f'vllm:{name}_bucket{{le="+Inf",model_name="plain"}}'] == 64  # a cumulative histogram
    assert m[f"vllm:prompt_tokens_total{label}"] == sum(a.usage.prompt_tokens for a in answers)
    assert m[f"vllm:generation_tokens_total{label}"] == sum(a.usage.completion_tokens for a in answers)
    assert m[f"vllm:num_requests_running{label}"] == 0 and m[f"vllm:num_requests_waiting{label}"] == 0
    assert m["advisor:decode_rows_total"] / m["advisor:decode_steps_total"] > 8  # many rows per step


def test_a_short_request_returns_before_a_long_one_it_joined(plain):
    with running(plain) as base:
        url, finished = f"{base}/v1/chat/completions", {}

        def post(name, question, max_tokens):
            r = httpx.post(url, json={"messages": ask(question), "max_tokens": max_tokens, "temperature": 0},
                           timeout=300)
            finished[name] = (time.perf_counter(), r.json()["usage"]["completion_tokens"], health(base)["running"])

        long = threading.Thread(target=post, args=("long", "Write a very long story about a dragon who bakes bread.",
                                                   120))
        long.start()
        deadline = time.time() + 60
        while health(base)["running"] == 0:  # the long one is generating
            assert time.time() < deadline
            time.sleep(0.05)
        post("short", "Hi", 3)
        long.join()
    assert finished["long"][1] > 40, finished  # it really was long
    assert finished["short"][0] < finished["long"][0] and finished["short"][2] == 1, finished  # it still ran


def health(base: str) -> dict:
    return httpx.get(f"{base}/health").json()


def test_queue_and_generation_timeouts_are_503_and_504(plain):
    limits = Limits(max_batch=1, queue_timeout_s=0.5, generation_timeout_s=1.5)
    with running(plain, limits) as base:
        c = client(base)
        story = ask("Write a very long story about a dragon who learns to bake bread.")
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(c.chat.completions.create, model="plain", messages=story, max_tokens=600,
                               temperature=0)
            time.sleep(0.2)
            waiting = pool.submit(c.chat.completions.create, model="plain", messages=ask("Hi"), max_tokens=2)
            with pytest.raises(openai.InternalServerError) as busy:
                waiting.result()
            with pytest.raises(openai.InternalServerError) as slow_err:
                slow.result()
        m = metrics(base)
    assert busy.value.status_code == 503 and busy.value.code == "queue_timeout"
    assert int(busy.value.response.headers["retry-after"]) >= 1 and "--queue-timeout" in busy.value.message
    assert slow_err.value.status_code == 504 and slow_err.value.code == "generation_timeout"
    assert slow_err.value.type == "server_error" and "--generation-timeout" in slow_err.value.message
    assert m['advisor:requests_total{outcome="queue_timeout"}'] == 1
    assert m['advisor:requests_total{outcome="generation_timeout"}'] == 1


def test_client_disconnect_stops_generation(plain):
    with running(plain) as base:
        body = {"messages": ask("Write a very long story about a dragon who learns to bake bread."),
                "max_tokens": 400, "stream": True, "temperature": 0}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break  # the first piece of text: hang up
        with pytest.raises(httpx.ReadTimeout):  # not streaming: the client gives up waiting for the whole answer
            httpx.post(f"{base}/v1/chat/completions", json={**body, "stream": False}, timeout=1.0)
        deadline = time.time() + 120
        while metrics(base)['advisor:requests_total{outcome="cancelled"}'] < 2:
            assert time.time() < deadline, "the cancelled requests never left the batch"
            time.sleep(0.2)
        m = metrics(base)
        assert m["advisor:decode_steps_total"] < 200, m  # both stopped long before their 400 tokens
        assert m['advisor:requests_total{outcome="ok"}'] == 0
        again = httpx.post(f"{base}/v1/chat/completions", json={"messages": ask("Hi"), "max_tokens": 4}, timeout=300)
        assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] <= 4


def test_shutdown_drains_requests_in_flight(plain):
    """What SIGTERM does (uvicorn's handler sets should_exit): no new connections, the running answer finishes."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(plain), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, f"{base}/v1/chat/completions", timeout=300, json={
            "messages": ask("Write a long story about a dragon."), "max_tokens": 40, "temperature": 0})
        while health(base)["running"] == 0:
            time.sleep(0.05)
        server.should_exit = True
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # stopped accepting
            httpx.get(f"{base}/health", timeout=5)
        r = answer.result()
    thread.join(60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 20  # finished, not cut
    assert not thread.is_alive()


def test_full_queue_is_503_and_limits_are_400_413(plain):
    limits = Limits(max_tokens=64, max_body_bytes=2000, max_batch=1, max_queue=1)
    with running(plain, limits) as base:
        url = f"{base}/v1/chat/completions"
        big = httpx.post(url, json={"messages": ask("Hi"), "max_tokens": 65}, timeout=60)
        assert big.status_code == 400 and "max_tokens 65 is over this server's limit of 64" in big.text
        assert big.json()["error"]["param"] == "max_tokens"
        long_body = {"messages": ask("x" * 3000)}
        assert httpx.post(url, json=long_body).status_code == 413
        chunked = httpx.post(url, content=iter([b'{"messages": [{"role": "user", "content": "', b"y" * 3000, b'"}]}']))
        assert chunked.status_code == 413 and "over 2000 bytes" in chunked.text  # no content-length: counted

        # One generating, one queued: the others are turned away with 503 and Retry-After.
        def post(i):
            return httpx.post(url, json={"messages": ask(f"Tell me story number {i}."), "max_tokens": 8}, timeout=1800)

        with ThreadPoolExecutor(5) as pool:
            replies = list(pool.map(post, range(5)))
        codes = sorted(r.status_code for r in replies)
        busy = [r for r in replies if r.status_code == 503]
        assert codes.count(200) >= 2 and busy and set(codes) <= {200, 503}, codes
        assert all(int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "queue_full" for r in busy)
        m = metrics(base)
        assert m['advisor:requests_total{outcome="rejected"}'] == len(busy)
        assert m['advisor:requests_total{outcome="bad_request"}'] == 1  # max_tokens (a 413 is never parsed)


def test_only_loopback_without_a_key():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, None)
    check_exposure("0.0.0.0", "SOME_KEY_VAR")
    with pytest.raises(ServeError, match="--host 0.0.0.0 exposes the server.*--api-key-env"):
        check_exposure("0.0.0.0", None)
    r = advisor("serve", "--model", "embedded", "--host", "0.0.0.0")
    assert r.returncode == 2 and "--api-key-env" in r.stderr and "loading" not in r.stderr  # refused before loading
    assert "Traceback" not in r.stderr


def test_streamed_pieces_never_split_a_character_nor_a_stop_string(generator):
    """Token by token as the engine streams: multi-byte characters arrive whole, pieces add up to the answer."""
    text = "Café ☕ costs 3€ — naïve 日本語 🐉!"
    ids = generator.tokenizer(text, add_special_tokens=False)["input_ids"]
    sent, pieces = "", []
    for n in range(1, len(ids) + 1):
        now = streamable(generator.tokenizer.decode(ids[:n], skip_special_tokens=True).strip(), ())
        if len(now) > len(sent) and now.startswith(sent):
            pieces.append(now[len(sent):])
            sent = now
    assert "".join(pieces) == text and len(pieces) > 5
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) < len(ids)  # held back while a character was incomplete
    assert streamable("Hello wor", ("world", "xyz")) == "Hello "  # might become a stop string: held back
    assert streamable("Hello wo!", ("world",)) == "Hello wo!"
