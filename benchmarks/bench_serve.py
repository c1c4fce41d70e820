"""Serving: the batched `advisor serve` vs the same server answering one request at a time, same run.

    .venv/bin/python benchmarks/bench_serve.py [--concurrency 1 4 16] [--requests-per-client 2] [--max-tokens 16]

Both servers are the real app (FastAPI + uvicorn on 127.0.0.1) over one loaded model:
the sample task's few-shot recipe (instructions + examples + the question), greedy.
"one at a time" is the same server with max_batch 1, which is how `advisor serve`
answered before batching. N clients each send their requests back to back over HTTP;
printed: requests/s, p50/p95 latency per client count, and the batched/one-at-a-time ratio.
"""
from __future__ import annotations

import argparse
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
    """`clients` threads, each sending `per_client` requests back to back; latencies and wall time."""
    def client(c: int) -> list[float]:
        out = []
        with httpx.Client(timeout=3600) as http:
            for i in range(per_client):
                q = questions[(c * per_client + i) % len(questions)]
                t0 = time.perf_counter()
                r = http.post(f"{base}/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens, "temperature": 0})
                r.raise_for_status()
                out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(x for xs in pool.map(client, range(clients)) for x in xs)
    wall = time.perf_counter() - t0
    calls = [line for line in httpx.get(f"{base}/metrics").text.splitlines()
             if line.startswith("advisor_generation_calls_total ")]
    return {"rps": len(latencies) / wall, "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], "n": len(latencies),
            "calls": int(calls[0].split()[1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/support")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=32)
    args = ap.parse_args()
    quiet()
    task = load_task(args.task)
    gen = Generator(task.spec.models.generator)
    shots = fixed_shots(task, task.spec.seed)
    served = Served("few-shot", gen.display_name, gen,
                    lambda messages: fewshot_messages(task.instructions, shots, messages[-1]["content"]), args.max_tokens)
    questions = [ex.input for ex in task.eval]
    # Warm up once (first-call allocations), outside the measurement, on a question no client sends
    # (a measured prompt would find its own prefix already computed).
    gen.generate([gen.chat_ids(served.prompt([{"role": "user", "content": "warm-up"}]))], 2, use_cache=False)

    print(machine())
    rows = []
    for clients in args.concurrency:
        result = {}
        for label, batch in (("one at a time", 1), ("batched", args.max_batch)):
            server, thread, base = start(served, Limits(max_batch=batch, max_queue=1024))
            try:
                result[label] = load(base, questions, clients, args.requests_per_client, args.max_tokens)
            finally:
                server.should_exit = True
                thread.join()
        one, bat = result["one at a time"], result["batched"]
        rows.append([clients, bat["n"], one["rps"], bat["rps"], bat["rps"] / one["rps"], one["p50"], bat["p50"],
                     one["p95"], bat["p95"], f"{one['calls']}/{bat['calls']}"])
    print_table(
        f"advisor serve, {task.name} few-shot recipe, greedy, max_tokens {args.max_tokens}, "
        f"{args.requests_per_client} request(s) per client",
        ["clients", "requests", "req/s one at a time", "req/s batched", "ratio (batched/one)", "p50 s one",
         "p50 s batched", "p95 s one", "p95 s batched", "generation calls one/batched"], rows)


if __name__ == "__main__":
    main()
