"""A generator behind an OpenAI-compatible chat-completions API.

Hosted APIs, a vLLM or TGI server, or another machine's `advisor serve`: the
prompting and RAG strategies send their chat messages here instead of to a local
model. The API key is read from the environment variable the task names (never
from a file, never printed). Requests run with bounded concurrency, each with a
timeout and retries with backoff on 408, 429, 5xx, timeouts and dropped connections
(honouring Retry-After, in seconds or as a date); the retries are counted for the run record.
Every completed answer is stored as it arrives, keyed by model, URL, messages,
parameters, seed and sample index, so a rerun after a failure pays only for what
is missing and no sample is ever served for another.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Iterator, Sequence

import httpx

from advisor import progress
from advisor.cache import cache_dir, hash_bytes, hash_json
from advisor.models import (Generation, GenerationCache, ModelError, chat_template_ids, count_tokens,
                           embedded_generator_dir, sample_indices)
from advisor.task import GeneratorSpec

BACKOFF_S = 0.5  # first retry waits about this long, doubling each time (capped at BACKOFF_MAX_S)
BACKOFF_MAX_S = 30.0
RETRY_STATUS = (408, 429)  # and every 5xx


class EndpointError(ModelError):
    """An endpoint that cannot be used: names the URL and what failed."""


def _short(text: str, n: int = 200) -> str:
    return " ".join(text.split())[:n]


def retry_after_s(value: str) -> float | None:
    """Retry-After as seconds to wait: a number of seconds or an HTTP date; None when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class EndpointGenerator:
    """Answers chat conversations through POST {endpoint}/chat/completions."""

    def __init__(self, spec: GeneratorSpec, name: str = "endpoint"):
        self.spec = spec
        self.name = name
        self.base = spec.endpoint.rstrip("/")
        self.model_name = spec.model
        self.display_name = f"{spec.model} @ {self.base}"
        self.fingerprint = hash_bytes(self.base, spec.model)[:16]
        self.context_window = spec.context_window
        headers = {}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise EndpointError(f"endpoint {self.base}: the environment variable {spec.api_key_env} "
                                    "(models.generators.*.api_key_env) is not set; export it with the API key")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(headers=headers, timeout=spec.timeout_s)
        self.cache = GenerationCache(cache_dir() / "generations.sqlite")
        self._tokenizer = None
        self.requests_sent = 0  # HTTP requests, retries included (tests check cached answers are not paid again)
        self.retries = 0  # requests sent again after a 408/429/5xx, a timeout or a dropped connection
        self._count = threading.Lock()

    # -- before any expensive work

    def check(self) -> None:
        """A cheap GET {endpoint}/models: reachable, key accepted, and the model served there.

        Runs before any expensive work, so a wrong URL, key or model name fails in seconds.
        """
        url = f"{self.base}/models"
        try:
            r = self.client.get(url)
        except httpx.TimeoutException:
            raise EndpointError(f"endpoint {url}: no answer within {self.spec.timeout_s:g} s (timeout_s)") from None
        except httpx.TransportError as e:
            raise EndpointError(f"endpoint {url}: cannot connect ({type(e).__name__}: {_short(str(e))}); "
                                "is the server running and the URL right?") from None
        if r.status_code in (401, 403):
            raise EndpointError(self._rejected(url, r))
        if r.status_code == 404:  # a server without a model list: a 1-token request tells instead
            self._post([{"role": "user", "content": "ping"}], {"max_tokens": 1, "temperature": 0.0})
            return
        if r.status_code != 200:
            raise EndpointError(f"endpoint {url}: HTTP {r.status_code}: {_short(r.text)}")
        try:
            served = [m.get("id") for m in r.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            served = []  # not every server lists its models; the first request will tell
        if served and self.model_name not in served:
            raise EndpointError(f"endpoint {url}: model {self.model_name!r} is not served there "
                                f"(it serves: {', '.join(map(str, served[:10]))})")

    def _rejected(self, url: str, r: httpx.Response) -> str:
        how = f"the key from ${self.spec.api_key_env}" if self.spec.api_key_env else "no API key (set api_key_env)"
        return f"endpoint {url}: HTTP {r.status_code}, the server rejected {how}: {_short(r.text)}"

    # -- the generator interface strategies use

    @property
    def tokenizer(self):
        """The embedded model's tokenizer: a local estimate of prompt length before sending."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(embedded_generator_dir()[0])
        return self._tokenizer

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(chat_template_ids(self.tokenizer, messages))

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    @contextmanager
    def adapter(self, path: Path | None) -> Iterator[None]:
        if path is not None:
            raise EndpointError(f"endpoint {self.base}: a LoRA adapter needs a local model, not an endpoint")
        yield

    def complete(self, conversations: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int = 16,
                 temperature: float = 0.0, seed: int = 0, sample_index: int | Sequence[int] = 0,
                 use_cache: bool = True, batch_tokens: int | None = None) -> list[Generation]:
        """Answer every conversation; cached ones cost nothing, the rest run `max_concurrency` at a time.

        `sample_index` is one for all conversations or one per conversation (as for a local Generator);
        `batch_size` and `batch_tokens` are a local model's batching, which the server does its own way.
        """
        sampled = temperature > 0
        indices = sample_indices(sample_index, len(conversations))
        # A distinct request seed per sample, so repeated samples differ on servers that honour `seed`.
        params = [{"max_tokens": max_new_tokens, "temperature": temperature,
                   "seed": int(hash_bytes(str(seed), str(k))[:8], 16) if sampled else seed} for k in indices]
        keys = [hash_json(["endpoint", self.base, self.model_name, m, p, seed if sampled else None,
                           k if sampled else None]) for m, p, k in zip(conversations, params, indices, strict=True)]
        results: list[Generation | None] = [self.cache.get(k) if use_cache else None for k in keys]
        missing = [i for i, g in enumerate(results) if g is None]
        progress.advance(len(results) - len(missing))
        if not missing:
            return results  # type: ignore[return-value]
        t0 = time.perf_counter()
        error: Exception | None = None
        with ThreadPoolExecutor(self.spec.max_concurrency) as pool:
            futures = {pool.submit(self._post, conversations[i], params[i]): i for i in missing}
            for f in as_completed(futures):
                try:
                    g = f.result()
                except CancelledError:
                    continue
                except Exception as e:  # the first failure stops what has not started; finished answers are kept
                    if error is None:
                        error = e
                        for other in futures:
                            other.cancel()
                    continue
                results[futures[f]] = g
                progress.advance()
                if use_cache:  # stored as it arrives, so a rerun after a failure does not pay for it again
                    self.cache.put(keys[futures[f]], g)
        if error is not None:
            raise error
        # Each answer's share of the wall time at this concurrency (what throughput is measured from).
        share = (time.perf_counter() - t0) / len(missing)
        for i in missing:
            g = results[i]
            g.seconds = share
            if use_cache:
                self.cache.put(keys[i], g)
        return results  # type: ignore[return-value]

    def _post(self, messages: list[dict[str, str]], params: dict) -> Generation:
        url = f"{self.base}/chat/completions"
        body = {"model": self.model_name, "messages": messages, **params}
        attempts = self.spec.max_retries + 1
        why = ""
        for attempt in range(attempts):
            wait_s = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** attempt) * random.uniform(0.8, 1.2)
            t0 = time.perf_counter()
            try:
                self.requests_sent += 1
                r = self.client.post(url, json=body)
            except httpx.TimeoutException:
                why = f"no answer within {self.spec.timeout_s:g} s (timeout_s)"
            except httpx.TransportError as e:
                why = f"cannot connect ({type(e).__name__}: {_short(str(e))})"
            else:
                if r.status_code == 200:
                    return self._parse(url, r, messages, time.perf_counter() - t0)
                if r.status_code in (401, 403):
                    raise EndpointError(self._rejected(url, r))
                why = f"HTTP {r.status_code}: {_short(r.text)}"
                if r.status_code not in RETRY_STATUS and r.status_code < 500:
                    raise EndpointError(f"endpoint {url}: {why}")
                asked = retry_after_s(r.headers.get("retry-after", ""))
                if asked is not None:
                    wait_s = min(BACKOFF_MAX_S, asked)
            if attempt + 1 < attempts:
                with self._count:
                    self.retries += 1
                time.sleep(wait_s)
        raise EndpointError(f"endpoint {url}: failed after {attempts} attempt(s): {why}")

    def _parse(self, url: str, r: httpx.Response, messages, seconds: float) -> Generation:
        try:
            data = r.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError(f"endpoint {url}: the answer is not a chat completion: {_short(r.text)}") from None
        usage = data.get("usage") or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        # A server that reports no usage gets the local estimate (rare; OpenAI, vLLM and TGI all report it).
        prompt = int(prompt) if prompt is not None else self.prompt_tokens(messages)
        completion = int(completion) if completion is not None else self.count_tokens(text)
        return Generation(text=text.strip(), prompt_tokens=prompt, completion_tokens=completion, seconds=seconds)
