"""Scale: how each stage's time grows with the document count and the eval size.

    python benchmarks/bench_scale.py [--docs 10 40 160 640] [--evals 8 16 32 64]

Stages, each timed alone in a fresh cache:
- indexing (chunk + embed + FAISS) over n documents: the sample task's 10
  documents copied with a numbered marker in every paragraph, so nothing is shared;
- answering n eval items (greedy, generation cache off) for the `few-shot` and
  `rag` rows: the sample task's eval questions cycled with a numbered suffix.
A line t = a + b*n is fitted per stage; the table gives the size at which the
stage takes twice as long as at the sample task's size (2*n0 + a/b): large when a
fixed cost dominates, about 2*n0 when the stage is linear in n from the start.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from common import fresh_cache, machine, print_table, quiet, timed


def doubling(sizes: list[int], seconds: list[float], n0: int) -> tuple[float, float, float]:
    """Fit t = a + b*n; return (a, b, n where t(n) = 2*t(n0))."""
    b, a = np.polyfit(sizes, seconds, 1)
    return a, b, (2 * n0 + a / b) if b > 0 else float("inf")


def copies(docs, n: int):
    from advisor.task import Document

    out = []
    for i in range(n):
        d = docs[i % len(docs)]
        text = d.text.replace("\n\n", f"\n\n(Edition {i // len(docs)}.) ") if i >= len(docs) else d.text
        out.append(Document(id=f"{i // len(docs)}/{d.id}", text=text))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="data/support")
    ap.add_argument("--docs", type=int, nargs="+", default=[10, 40, 160, 640])
    ap.add_argument("--evals", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args()
    fresh_cache("bench-scale-")
    from advisor.models import Embedder, Generator
    from advisor.task import load_task
    from strategies import Context, registry
    from advisor.retrieval import RagIndex

    quiet()
    print(machine())
    task = load_task(args.task)
    spec = task.spec.rag
    emb = Embedder(task.spec.models.embedder)
    emb.encode(["warm-up"])
    rows, fits = [], []

    index_t = []
    for n in args.docs:
        with timed() as t:
            idx = RagIndex.build(copies(task.documents, n), emb, spec.chunk_tokens, spec.chunk_overlap,
                                 spec.approximate_above)
        index_t.append(t.seconds)
        rows.append(["indexing", f"{n} docs ({len(idx.chunks)} chunks)", t.seconds])
    fits.append(("indexing", "documents", len(task.documents), *doubling(args.docs, index_t, len(task.documents))))

    gen = Generator(task.spec.models.generator)
    ctx = Context(task, task.spec.seed, gen, lambda: emb, tempfile.mkdtemp())
    for name in ("few-shot", "rag"):
        strat = registry()[name](ctx)
        strat.prepare()
        times = []
        for n in args.evals:
            inputs = [f"{task.eval[i % len(task.eval)].input} (ref {i})" for i in range(n)]
            with timed() as t:
                strat.answer(inputs, use_cache=False)  # retrieval, prompts and batched generation, as in a run
            times.append(t.seconds)
            rows.append([f"answering, {name}", f"{n} eval items", t.seconds])
        fits.append((f"answering, {name}", "eval items", len(task.eval), *doubling(args.evals, times, len(task.eval))))

    print_table("Stage time vs size", ["stage", "size", "seconds"], rows)
    print_table("Where each stage's time doubles (fit t = a + b*n)",
                ["stage", "grows with", "sample size n0", "fixed a (s)", "per item b (s)", "t doubles at n ="],
                [[s, unit, n0, a, b, f"{d:,.0f}"] for s, unit, n0, a, b, d in fits],
                note=f"after: {machine()}")


if __name__ == "__main__":
    main()
