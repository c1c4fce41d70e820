"""Embedding and retrieval: encode throughput, and exact vs approximate FAISS indexes.

    python benchmarks/bench_retrieval.py [--sizes 10000 100000] [--queries 1000]
    python benchmarks/bench_retrieval.py --sizes 1000000 --skip-encode --hnsw-max 2000000 --ef-search 128 256 512 --ivf-lists 0
    python benchmarks/bench_retrieval.py --sizes 100000 --hnsw 16,40 32,200    # compare HNSW settings

Encoding: the advisor's `Embedder.encode` (one call, sentence-transformers sorts the
texts by length so a batch pads little) vs one call per batch of 64 texts in their
original order (each batch pads to its longest text) and vs one call per text.
Texts: every train/eval input and output and every document chunk of the sample tasks.

Indexes: synthetic vectors shaped like sentence embeddings, not uniform noise (on
which no approximate index works, and real embeddings are nothing like it): a
Gaussian mixture (n/100 clusters, per-cluster spread) in a 32-dim latent space,
mapped to 384 dims by a fixed random matrix, plus isotropic noise, L2-normalized.
Queries are fresh draws from the same mixture. Exact search (IndexFlatIP) is the
baseline and the ground truth for recall@10. Queries/s is measured two ways: all
queries in one call (the advisor's evaluation; exact search is then one BLAS matrix
product) and one query per call (a RAG service answering requests; the way
ann-benchmarks measures).
"""
from __future__ import annotations

import argparse
import math

import faiss
import numpy as np

from common import ROOT, machine, print_table, quiet, timed

DIM, LATENT, NOISE = 384, 32, 0.15


class Mixture:
    """Clustered, normalized vectors: a Gaussian mixture in a low-dim latent space, embedded in DIM dims."""

    def __init__(self, n_clusters: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.centers = rng.standard_normal((n_clusters, LATENT)).astype("float32")
        self.spread = rng.uniform(0.6, 1.2, n_clusters).astype("float32")  # some topics tight, some broad
        self.project = rng.standard_normal((LATENT, DIM)).astype("float32") / math.sqrt(LATENT)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, DIM), dtype="float32")
        for s in range(0, n, 100_000):  # in slices: the latent noise for 1M rows at once is wasteful
            m = min(100_000, n - s)
            c = rng.integers(0, len(self.centers), m)
            z = self.centers[c] + self.spread[c, None] * rng.standard_normal((m, LATENT), dtype="float32")
            x = z @ self.project + NOISE * rng.standard_normal((m, DIM), dtype="float32")
            out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def recall_at_10(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]))


def bench_encode(limit: int | None = None):
    from advisor.models import Embedder
    from advisor.task import load_task
    from advisor.retrieval import chunk_documents

    emb = Embedder()
    texts = []
    for folder in sorted(p.parent for p in (ROOT / "data").glob("*/task.yaml")):  # every sample task
        task = load_task(folder)
        texts += [t for ex in task.train + task.eval for t in (ex.input, ex.output) if t]
        texts += [c.text for c in chunk_documents(task.documents, emb.model.tokenizer, 160, 32)]
    texts = texts[:limit]
    emb.encode(texts[:64])  # warm-up
    with timed() as ours:
        a = emb.encode(texts)
    with timed() as unsorted:
        b = np.concatenate([emb.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    n_single = min(len(texts), 200)
    with timed() as single:
        for t in texts[:n_single]:
            emb.encode([t])
    lengths = [len(emb.model.tokenizer(t)["input_ids"]) for t in texts]
    same = float(np.abs(a - b).max())
    print_table(
        f"Encode throughput, MiniLM-L6: {len(texts)} texts, {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f})",
        ["path", "seconds", "texts/s", "advisor vs this"],
        [["naive: one call per text", single.seconds * len(texts) / n_single, n_single / single.seconds,
          f"{(len(texts) / ours.seconds) / (n_single / single.seconds):.1f}x"],
         ["naive: batches of 64 in original order", unsorted.seconds, len(texts) / unsorted.seconds,
          f"{unsorted.seconds / ours.seconds:.1f}x"],
         ["advisor: one call, length-sorted batches of 64", ours.seconds, len(texts) / ours.seconds, "1.0x"]],
        note=f"(one-call-per-text timed on the first {n_single} texts and scaled); max |difference| "
             f"between advisor and unsorted vectors: {same:.1e}",
    )


def bench_index(n: int, n_queries: int, n_single: int, hnsw_max: int, hnsw_configs: list[tuple[int, int]],
                ef_search: list[int], ivf_lists: list[int]) -> list[list]:
    from advisor.retrieval import HNSW_EF_CONSTRUCTION, HNSW_M, build_faiss

    mix = Mixture(max(10, n // 100))
    with timed() as gen_t:
        base = mix.sample(n, seed=1)
    queries = mix.sample(n_queries, seed=2)
    rows = []

    def measure(label: str, build, search_params=None):
        with timed() as b:
            index = build()
        results = []
        for params, name in search_params or [(None, "")]:
            if params:
                params(index)
            index.search(queries[:10], 10)  # warm-up
            with timed() as s:
                _, found = index.search(queries, 10)
            with timed() as one:  # one query per call, as a RAG service searches (and as ann-benchmarks measures)
                for i in range(n_single):
                    index.search(queries[i : i + 1], 10)
            results.append((name, (n_queries / s.seconds, n_single / one.seconds), found))
        return b.seconds, results

    def row(name: str, build_s: float, qps: tuple[float, float], found) -> list:
        return ["", name, build_s, qps[0], qps[1], f"{recall_at_10(truth, found):.3f}",
                f"{qps[0] / exact_qps[0]:.1f}x", f"{qps[1] / exact_qps[1]:.1f}x"]

    build_s, [(_, exact_qps, truth)] = measure("flat", lambda: build_faiss(base, approximate_above=n + 1))
    rows.append([f"{n:,}", "exact: IndexFlatIP", build_s, *exact_qps, "1.000", "1.0x", "1.0x"])

    if n <= hnsw_max:
        for m, efc in hnsw_configs:
            def hnsw(m=m, efc=efc):
                if (m, efc) == (HNSW_M, HNSW_EF_CONSTRUCTION):
                    return build_faiss(base, approximate_above=0)  # exactly what the advisor builds
                index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = efc
                index.add(base)
                return index

            def ef(v):
                return lambda index: setattr(index.hnsw, "efSearch", v)

            build_s, res = measure("hnsw", hnsw, [(ef(v), f"efSearch {v}") for v in ef_search])
            mine = " (advisor's)" if (m, efc) == (HNSW_M, HNSW_EF_CONSTRUCTION) else ""
            for name, qps, found in res:
                rows.append(row(f"HNSW M={m} efC={efc}{mine}, {name}", build_s, qps, found))

    for nlist in ([] if ivf_lists == [0] else ivf_lists or [int(4 * math.sqrt(n))]):
        # Many lists need a fast coarse search: an HNSW quantizer above 8k lists (faiss's IVF..._HNSW).
        hnsw_q = nlist > 8192

        def ivf(nlist=nlist, hnsw_q=hnsw_q):
            quantizer = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT) if hnsw_q else faiss.IndexFlatIP(DIM)
            index = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(base[np.random.default_rng(3).choice(n, min(n, 32 * nlist), replace=False)])
            index.add(base)
            return index

        def probe(v):
            return lambda index: setattr(index, "nprobe", v)

        build_s, res = measure("ivf", ivf, [(probe(p), f"nprobe {p}") for p in (8, 16, 32, 64, 128)])
        for name, qps, found in res:
            rows.append(row(f"IVFFlat nlist={nlist}{' (HNSW quantizer)' if hnsw_q else ''}, {name}", build_s, qps, found))
    print(f"  {n:,} vectors generated in {gen_t.seconds:.1f} s")
    return rows


def main():
    from advisor.retrieval import HNSW_EF_CONSTRUCTION, HNSW_M

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="none: encode only")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (slow build on 2 cores)")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--encode-limit", type=int, default=None, help="encode the first N texts only (quick check)")
    ap.add_argument("--hnsw", nargs="+", default=[f"{HNSW_M},{HNSW_EF_CONSTRUCTION}"], metavar="M,EFC",
                    help="HNSW configurations (default: the advisor's); e.g. --hnsw 32,200 16,40")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--single-queries", type=int, default=100, help="queries timed one per call")
    ap.add_argument("--ivf-lists", type=int, nargs="+", default=[], help="IVF list counts (default: 4 sqrt(n); 0: no IVF)")
    args = ap.parse_args()
    quiet()
    print(machine())
    if not args.skip_encode:
        bench_encode(args.encode_limit)
    rows = []
    for n in args.sizes:
        rows += bench_index(n, args.queries, args.single_queries, args.hnsw_max,
                            [tuple(map(int, c.split(","))) for c in args.hnsw], args.ef_search, args.ivf_lists)
    if rows:
        print_table(f"FAISS, {DIM}-dim clustered vectors, top-10: {args.queries} queries as one batch, and "
                    f"{args.single_queries} one per call",
                    ["vectors", "index", "build s", "batch q/s", "single q/s", "recall@10", "batch vs exact",
                     "single vs exact"], rows,
                    note=f"after: {machine()}")


if __name__ == "__main__":
    main()
