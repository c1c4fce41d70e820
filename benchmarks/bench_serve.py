"""Serving: `advisor serve` (iteration-level scheduling) vs the same server answering one request at a time.

    .venv/bin/python benchmarks/bench_serve.py [--concurrency 1 4 16 64] [--requests-per-client 1] [--max-tokens 8]

Both servers are the real app (FastAPI + uvicorn on 127.0.0.1) over one loaded model:
the task's few-shot recipe (instructions + examples + the question), greedy, streamed.
"one at a time" is the same server with max_batch 1 (each request waits for the one
before it to finish). N clients each send their requests back to back over HTTP;
printed per client count: requests/s, p50/p95 time to first token (the first content
chunk) and the mean rows per decode step, with the batched/one-at-a-time ratios.
The default task is data/quick_facts (short prompts), so the whole run takes minutes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import machine, print_table, quiet

from advisor.models import Generator
from advisor.serve import Limits, Served, build_app
from advisor.task import load_task
from strategies.base import fewshot_messages
from strategies.prompting import fixed_shots


def start(served: Served, limits: Limits):
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(served, limits=limits), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def load(base: str, questions: list[str], clients: int, per_client: int, max_tokens: int) -> dict:
    """`clients` threads, each streaming `per_client` requests back to back; time to first token and wall time."""
    def client(c: int) -> list[float]:
        out = []
        with httpx.Client(timeout=3600) as http:
            for i in range(per_client):
                q = questions[(c * per_client + i) % len(questions)]
                t0, first = time.perf_counter(), None
                body = {"messages": [{"role": "user", "content": q}], "max_tokens": max_tokens, "temperature": 0,
                        "stream": True}
                with http.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if first is None and line.startswith("data: {") and json.loads(line[6:])["choices"] and \
                                json.loads(line[6:])["choices"][0]["delta"].get("content"):
                            first = time.perf_counter() - t0
                out.append(first if first is not None else time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ttfts = sorted(x for xs in pool.map(client, range(clients)) for x in xs)
    wall = time.perf_counter() - t0
    counters = {line.split()[0]: float(line.split()[1]) for line in httpx.get(f"{base}/metrics").text.splitlines()
                if line.startswith("advisor:decode_")}
    return {"rps": len(ttfts) / wall, "p50": statistics.median(ttfts),
            "p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], "n": len(ttfts),
            "rows": counters["advisor:decode_rows_total"] / max(1.0, counters["advisor:decode_steps_total"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/quick_facts")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--requests-per-client", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--max-batch", type=int, default=64)
    args = ap.parse_args()
    quiet()
    task = load_task(args.task)
    gen = Generator(task.spec.models.generator)
    shots = fixed_shots(task, task.spec.seed)
    served = Served("few-shot", gen.display_name, gen,
                    lambda messages: fewshot_messages(task.instructions, shots, messages[-1]["content"]), args.max_tokens)
    questions = [ex.input for ex in task.eval]
    # Warm up once (first-call allocations), outside the measurement.
    gen.generate([gen.chat_ids(served.prompt([{"role": "user", "content": "warm-up"}]))], 2, use_cache=False)

    print(machine())  # at the start; printed again at the end
    rows = []
    for clients in args.concurrency:
        result = {}
        for label, batch in (("one at a time", 1), ("batched", args.max_batch)):
            server, thread, base = start(served, Limits(max_batch=batch, max_queue=1024, queue_timeout_s=3600,
                                                        generation_timeout_s=3600))
            try:
                result[label] = load(base, questions, clients, args.requests_per_client, args.max_tokens)
            finally:
                server.should_exit = True
                thread.join()
        one, bat = result["one at a time"], result["batched"]
        rows.append([clients, bat["n"], one["rps"], bat["rps"], bat["rps"] / one["rps"], one["p50"], bat["p50"],
                     one["p95"], bat["p95"], one["p95"] / bat["p95"], bat["rows"]])
    print(machine())
    print_table(
        f"advisor serve, {task.name} few-shot recipe, greedy, streamed, max_tokens {args.max_tokens}, "
        f"{args.requests_per_client} request(s) per client; TTFT = time to the first content chunk",
        ["clients", "requests", "req/s one at a time", "req/s batched", "ratio (batched/one)", "p50 TTFT s one",
         "p50 TTFT s batched", "p95 TTFT s one", "p95 TTFT s batched", "p95 TTFT ratio (one/batched)",
         "rows per step batched"], rows)


if __name__ == "__main__":
    main()
