"""The endpoint backend against a real `advisor serve` on 127.0.0.1, and serving a run's strategy.

One plain-model server (the embedded model) runs for the module. Faults (429, 500,
a hang) come from a small proxy in front of it that forwards every other request
to the real server; nothing returns canned answers.
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from advisor.endpoint import EndpointError, EndpointGenerator
from advisor.task import GeneratorSpec, TaskError, load_task
from tests.conftest import advisor, write_task

KEY_ENV, KEY = "ADVISOR_TEST_ENDPOINT_KEY", "test-key-not-a-secret"
MODEL = "tiny-hosted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_advisor(*args: str, ready_url: str, env: dict | None = None, timeout: float = 240) -> subprocess.Popen:
    """Start `advisor ...` and wait until ready_url answers 200 (or the process dies)."""
    proc = subprocess.Popen([sys.executable, "-m", "advisor.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"advisor {' '.join(args)} exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(ready_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"advisor {' '.join(args)} not ready after {timeout} s")


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, as a service manager would; returns stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = start_advisor("serve", "--model", "embedded", "--model-name", MODEL, "--port", str(port),
                         "--api-key-env", KEY_ENV, ready_url=f"http://127.0.0.1:{port}/v1/models", env={KEY_ENV: KEY})
    yield f"http://127.0.0.1:{port}/v1"
    err = stop(proc)
    assert "stopped" in err and "Traceback" not in err, err[-2000:]


class FaultProxy:
    """Forwards to the real server, except that the first requests get the queued faults.

    A fault is an HTTP status (answered with an error body), a (status, headers) pair,
    or "hang" (no answer for `hang_s`).
    """

    def __init__(self, upstream: str, faults: list, hang_s: float = 3.0):
        self.upstream, self.faults, self.hang_s, self.requests = upstream.rstrip("/"), list(faults), hang_s, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self, method: str):
                proxy.requests += 1
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                fault = proxy.faults.pop(0) if proxy.faults else None
                headers = {}
                if isinstance(fault, tuple):
                    fault, headers = fault
                if fault == "hang":
                    time.sleep(proxy.hang_s)
                    return
                if fault is not None:
                    data, status = json.dumps({"error": {"message": f"injected {fault}"}}).encode(), fault
                else:
                    path = self.path.removeprefix("/v1")
                    r = httpx.request(method, proxy.upstream + path, content=body, timeout=60,
                                      headers={k: v for k, v in self.headers.items()
                                               if k.lower() in ("authorization", "content-type")})
                    data, status = r.content, r.status_code
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(server):
    made = []

    def make(faults, hang_s=3.0):
        made.append(FaultProxy(server, faults, hang_s))
        return made[-1]

    yield make
    for p in made:
        p.close()


def spec(url: str, **kw) -> GeneratorSpec:
    return GeneratorSpec(**{"endpoint": url, "model": MODEL, "api_key_env": KEY_ENV, "max_retries": 2,
                            "timeout_s": 60, **kw})


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- the backend


def test_answers_usage_cache_and_samples(server, key):
    gen = EndpointGenerator(spec(server, max_concurrency=2))
    gen.check()
    convs = [ask("What is the capital of France?"), ask("Name a colour.")]
    out = gen.complete(convs, max_new_tokens=8)
    assert gen.requests_sent == 2
    for g, m in zip(out, convs):
        assert g.text and 0 < g.completion_tokens <= 8
        assert g.prompt_tokens == gen.prompt_tokens(m)  # usage from the server = the same tokenizer's count
    again = gen.complete(convs, max_new_tokens=8)
    assert gen.requests_sent == 2 and [g.text for g in again] == [g.text for g in out]  # cached, not paid again
    gen.complete([ask("Say a word.")], 8, temperature=1.0, sample_index=0)
    gen.complete([ask("Say a word.")], 8, temperature=1.0, sample_index=1)
    assert gen.requests_sent == 4  # a sample is never served for another


def test_429_then_500_are_retried(proxy, key):
    p = proxy([429, 500])
    gen = EndpointGenerator(spec(p.url))
    out = gen.complete([ask("Retry me: what is 2 + 2?")], max_new_tokens=6)
    assert out[0].text and out[0].completion_tokens > 0
    assert p.requests == 3 and gen.requests_sent == 3 and gen.retries == 2


def test_408_is_retried_and_retry_after_is_honoured(proxy, key):
    p = proxy([408, (429, {"retry-after": "1.5"})])
    gen = EndpointGenerator(spec(p.url))
    t0 = time.perf_counter()
    out = gen.complete([ask("Retry me after a pause: what is 3 + 3?")], max_new_tokens=6)
    waited = time.perf_counter() - t0
    assert out[0].text and p.requests == 3 and gen.retries == 2
    assert waited >= 1.5  # the server's Retry-After, not the ~0.5 s first backoff


def test_retry_after_reads_seconds_and_http_dates():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from advisor.endpoint import retry_after_s

    assert retry_after_s("2") == 2.0 and retry_after_s(" 0.5 ") == 0.5
    assert retry_after_s("") is None and retry_after_s("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    assert 15 <= retry_after_s(later) <= 20
    earlier = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=20), usegmt=True)
    assert retry_after_s(earlier) == 0.0


def test_check_without_a_model_list_sends_one_token(proxy, key):
    p = proxy([404])  # a server with no GET /models
    EndpointGenerator(spec(p.url)).check()
    assert p.requests == 2


def test_timeout_names_url_and_limit(proxy, key):
    p = proxy(["hang"] * 3, hang_s=2.0)
    gen = EndpointGenerator(spec(p.url, timeout_s=0.5, max_retries=1))
    with pytest.raises(EndpointError, match=r"chat/completions: failed after 2 attempt\(s\): no answer within 0.5 s") as e:
        gen.complete([ask("Will time out")], max_new_tokens=6)
    assert f"endpoint {p.url}/chat/completions" in str(e.value) and p.requests == 2


def test_wrong_key_is_rejected_not_retried(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-bad-7f3q")
    gen = EndpointGenerator(spec(server))
    with pytest.raises(EndpointError, match=rf"rejected the key from \${KEY_ENV}") as e:
        gen.check()
    assert "sk-bad-7f3q" not in str(e.value)  # the key itself is never shown
    with pytest.raises(EndpointError, match="HTTP 401"):
        gen.complete([ask("Not with this key")], 4)
    assert gen.requests_sent == 1


# ---------------------------------------------------------------- through `advisor run`


def hosted_task(root: Path, url: str, key_env: str = KEY_ENV) -> Path:
    models = {"generator": "embedded", "embedder": "embedded",
              "generators": {
                  "hosted": {"endpoint": url, "model": MODEL, "api_key_env": key_env, "input_price_per_mtok": 0.15,
                             "output_price_per_mtok": 0.60, "max_concurrency": 2, "timeout_s": 30},
                  "local": {"hf": "embedded", "hardware_price_per_hour": 2.0}},
              "use": {"zero-shot": "hosted", "few-shot": "hosted", "rag": "hosted", "lora": "local"}}
    return write_task(root, models=models)


def test_server_down_is_a_clear_error_before_anything_is_written(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    task = hosted_task(tmp_path / "task", url)
    r = advisor("run", str(task), "--out", str(tmp_path / "out"), "-s", "few-shot", env={KEY_ENV: KEY})
    assert r.returncode == 3 and f"{url}/models: cannot connect" in r.stderr, r.stderr  # 3: endpoint failure
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_unset_key_variable_is_named_never_its_value(tmp_path, server):
    task = hosted_task(tmp_path / "task", server, key_env="ADVISOR_NO_SUCH_KEY_VAR")
    r = advisor("run", str(task), "--out", str(tmp_path / "out"), "-s", "few-shot")
    assert r.returncode == 3 and "ADVISOR_NO_SUCH_KEY_VAR" in r.stderr and server in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


FAMILIES = {"few-shot": "prompting", "rag": "rag", "lora": "finetune", "lora+rag": "finetune+rag"}  # what the CLI passes


def test_models_section_is_validated_at_load(tmp_path):
    base = {"generators": {"hosted": {"endpoint": "http://127.0.0.1:9/v1", "model": "m"}}}
    for models, field in (
        ({**base, "use": {"few-shot": "nope"}}, "models.use.few-shot"),
        ({**base, "use": {"lora": "hosted"}}, "models.use.lora"),
        ({**base, "use": {"no-such-strategy": "hosted"}}, "models.use.no-such-strategy"),
        ({"generators": {"hosted": {"endpoint": "http://127.0.0.1:9/v1"}}}, "models.generators.hosted.model"),
    ):
        with pytest.raises(TaskError) as e:
            load_task(write_task(tmp_path / field, models=models), strategies=FAMILIES)
        assert f"field {field}" in str(e.value) and "task.yaml" in str(e.value)


@pytest.fixture(scope="module")
def hosted_run(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("hosted")
    task = hosted_task(root / "task", server)
    out = root / "out"
    r = advisor("run", str(task), "--out", str(out), "-s", "few-shot", "-s", "lora", "--no-freshness",
                "--no-forgetting", env={KEY_ENV: KEY})
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r, json.loads((out / "results.json").read_text())


def test_hosted_and_self_hosted_rows_in_one_report(hosted_run, server):
    out, r, results = hosted_run
    rows = {s["name"]: s for s in results["strategies"]}
    few, lora = rows["few-shot"], rows["lora"]
    assert few["model"] == f"{MODEL} @ {server}" and few["pricing"]["kind"] == "hosted"
    assert lora["model"].endswith("+ LoRA adapter") and lora["pricing"]["kind"] == "self-hosted"
    assert few["economics"]["cost_per_request"] == pytest.approx(
        (few["tokens"]["prompt_mean"] * 0.15 + few["tokens"]["completion_mean"] * 0.60) / 1e6)
    secs = lora["pricing"]["seconds_per_request"]
    assert secs > 0 and lora["economics"]["cost_per_request"] == pytest.approx(secs * 2.0 / 3600)
    assert "generator hosted" in results["run"]["models"] and "generator local" in results["run"]["models"]
    html = (out / "report.html").read_text()
    assert "hosted: $0.15 in / $0.6 out per M tokens" in html and "self-hosted: $2/hour" in html
    assert f"{MODEL} @ {server}" in html and "Pricing" in (out / "report.md").read_text()
    # The endpoint's key (from the environment) is in no file the run wrote, nor in the caches it filled.
    written = [p for place in (out, Path(os.environ["ADVISOR_CACHE"])) for p in place.rglob("*") if p.is_file()]
    assert any(p.name == "advisor.log" for p in written)
    assert not [p for p in written if KEY.encode() in p.read_bytes()] and KEY not in r.stderr + r.stdout
    # `advisor roi` reprices from results.json alone: the hosted row keeps its own prices.
    roi = advisor("roi", str(out), "--input-price-per-mtok", "100")
    assert roi.returncode == 0 and "hosted: $0.15 in" in " ".join(roi.stdout.split()), roi.stdout + roi.stderr


def test_serve_a_runs_lora_strategy(hosted_run, tmp_path):
    out, _, results = hosted_run
    bad = advisor("serve", str(out), "--strategy", "rag")
    assert bad.returncode == 2 and "not in this run" in bad.stderr and "Traceback" not in bad.stderr
    port = free_port()
    proc = start_advisor("serve", str(out), "--strategy", "lora", "--port", str(port),
                         ready_url=f"http://127.0.0.1:{port}/v1/models")
    try:
        base = f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"{base}/models").json()["data"][0]["id"] == "lora"
        r = httpx.post(f"{base}/chat/completions", timeout=120, json={
            "model": "lora", "max_tokens": 12, "messages": [{"role": "user", "content": "Thanks a lot!"}]})
        body = r.json()
        assert r.status_code == 200 and body["choices"][0]["message"]["content"]
        assert 0 < body["usage"]["completion_tokens"] <= 12 and body["usage"]["prompt_tokens"] > 0
        assert httpx.post(f"{base}/chat/completions", json={"messages": [], "stream": True}).status_code == 400
        stream = httpx.post(f"{base}/chat/completions", timeout=120,
                            json={"stream": True, "max_tokens": 4, "messages": ask("hi")})  # streaming: tests/test_serve.py
        assert stream.status_code == 200 and stream.text.rstrip().endswith("data: [DONE]")
    finally:
        err = stop(proc)
    adapter = next(s for s in results["strategies"] if s["name"] == "lora")["setup"]["adapter"]
    assert "loading lora" in err and adapter in err and "serving lora on http://127.0.0.1" in err, err[-2000:]
    assert "Traceback" not in err


def test_serving_never_trains_a_missing_adapter(generator, tmp_path, monkeypatch):
    from advisor.task import FinetuneSpec
    from advisor.training import AdapterMissing, train_lora

    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(AdapterMissing, match="not in the cache"):
        train_lora(generator, [("Hi", "Hi! Bye.")], FinetuneSpec(num_train_epochs=1), seed=0, reuse_only=True)
    assert not (tmp_path / "empty-cache" / "adapters").exists() or not any((tmp_path / "empty-cache" / "adapters").iterdir())
