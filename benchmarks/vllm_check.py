"""GPU only: serve an `advisor export --to vllm` folder with vLLM and compare its answers with `advisor serve`.

    # on a machine with a GPU and `pip install vllm openai` (not installed by `make setup`):
    advisor export runs/support EXPORT --to vllm [--strategy lora]
    .venv/bin/python benchmarks/vllm_check.py runs/support EXPORT [--strategy lora] [--n 16]

Starts `advisor serve RUN` and the export's own `serve.sh` (vllm serve ... --enable-lora
--lora-modules ...), sends the run's eval questions to both at temperature 0 and prints
how many answers are identical, and where they differ. Retrieval rows go through the
export's client.py for the vLLM side. vLLM computes in bf16/fp16 on a GPU while advisor
serves float32 on CPU, so a few greedy answers may differ late in the text; the script
reports exact matches and the length of the common prefix, and exits 1 below --min-match.
Not run on the project's CPU machines (no GPU was lent when it was written).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} not ready after {timeout} s")


def ask(base: str, model: str, user: str, max_tokens: int) -> str:
    r = httpx.post(f"{base}/chat/completions", timeout=600, json={
        "model": model, "temperature": 0, "max_tokens": max_tokens, "messages": [{"role": "user", "content": user}]})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("export")
    ap.add_argument("--strategy", default=None, help="default: the exported one")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--min-match", type=float, default=0.8)
    args = ap.parse_args()
    export = Path(args.export).resolve()
    recipe = json.loads((export / "recipe.json").read_text())
    name, max_tokens = recipe["model_name"], recipe["generation"]["max_tokens"]
    results = json.loads((Path(args.run) / "results.json").read_text())
    questions = [e["input"] for e in results.get("examples", [])][: args.n]  # the run's eval questions
    if not questions:
        raise SystemExit(f"{args.run}/results.json lists no eval examples")

    a_port, v_port = free_port(), free_port()
    advisor = subprocess.Popen([sys.executable, "-m", "advisor.cli", "serve", args.run, "--strategy", args.strategy or name,
                                "--port", str(a_port)])
    vllm = subprocess.Popen(["./serve.sh", "--port", str(v_port)], cwd=export, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{a_port}/health", advisor, 600)
        wait_ready(f"http://127.0.0.1:{v_port}/v1/models", vllm, 1200)
        user = lambda q: q  # noqa: E731
        if recipe.get("retrieval"):
            spec = importlib.util.spec_from_file_location("exported_client", export / "client.py")
            client = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(client)
            user = client.Retriever(export).user_message
        same, prefixes = 0, []
        for q in questions:
            a = ask(f"http://127.0.0.1:{a_port}/v1", name, q, max_tokens)
            v = ask(f"http://127.0.0.1:{v_port}/v1", name, user(q), max_tokens)
            common = os.path.commonprefix([a, v])
            prefixes.append(len(common) / max(1, len(a)))
            same += a == v
            if a != v:
                print(f"differs: {q!r}\n  advisor: {a!r}\n  vllm:    {v!r}")
        share = same / len(questions)
        print(f"{same}/{len(questions)} identical answers ({share:.0%}); mean common prefix "
              f"{sum(prefixes) / len(prefixes):.0%} of advisor's answer")
        sys.exit(0 if share >= args.min_match else 1)
    finally:
        advisor.terminate()
        os.killpg(vllm.pid, signal.SIGTERM)
        advisor.wait(60)
        vllm.wait(120)


if __name__ == "__main__":
    main()
