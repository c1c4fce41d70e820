"""Retrieval-augmented generation: token chunks, normalized embeddings, a FAISS index.

The index persists in the cache keyed by a hash of documents + embedder + chunking,
and chunk embeddings are cached one by one, so a changed document re-embeds only
its own chunks.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from advisor.cache import atomic_dir, atomic_write_bytes, cache_dir, hash_bytes, hash_json
from advisor.task import Document
from strategies.base import Strategy, fewshot_messages
from strategies.prompting import fixed_shots

# Measured on clustered 384-dim vectors, 2 cores (benchmarks/README.md): at 1M, build 167 s, recall@10 0.958,
# 91x exact search's queries/s one query at a time; at 100k, build 10 s, recall 0.994 (32/200/128: 72 s, 0.999).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 40, 256
MEMO_LIMIT = 10_000  # retrieved passages kept per question; a long-running server must not grow without end


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str  # document id
    section: str
    text: str


def _sections(doc: Document) -> list[tuple[str, str]]:
    """Split Markdown at headings so a chunk never straddles two sections.

    A heading with no text under it (a document title) makes no chunk of its own.
    """
    parts, title, heading, body = [], "", [], []
    for line in doc.text.splitlines() + ["# end"]:
        if re.match(r"^#{1,6} ", line):
            if "".join(body).strip():
                parts.append((title, "\n".join(heading + body).strip()))
            title, heading, body = line.lstrip("#").strip(), [line], []
        else:
            body.append(line)
    return parts


def chunk_documents(docs: list[Document], tokenizer, size: int, overlap: int) -> list[Chunk]:
    """Windows of `size` tokens overlapping by `overlap`, within each section."""
    chunks = []
    for doc in docs:
        for s, (title, text) in enumerate(_sections(doc)):
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            step = size - overlap
            for n, start in enumerate(range(0, max(1, len(offsets) - overlap), step)):
                window = offsets[start : start + size]
                if not window:
                    break
                piece = text[window[0][0] : window[-1][1]]
                chunks.append(Chunk(id=f"{doc.id}#{s}.{n}", source=doc.id, section=title, text=piece))
    return chunks


class EmbeddingStore:
    """Chunk embeddings on disk, keyed by embedder + text, so unchanged chunks are never re-encoded."""

    def __init__(self, path: Path):
        self.path = path
        with sqlite3.connect(path, timeout=60) as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def vectors(self, embedder, texts: list[str]) -> np.ndarray:
        keys = [hash_bytes(embedder.fingerprint, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with sqlite3.connect(self.path, timeout=60) as db:
            for i in range(0, len(keys), 500):
                batch = keys[i : i + 500]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(batch))})"
                for k, blob in db.execute(q, batch):
                    found[k] = np.frombuffer(blob, dtype="float32")
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            new = embedder.encode([texts[i] for i in missing])
            with sqlite3.connect(self.path, timeout=60) as db:
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                               [(keys[i], v.tobytes()) for i, v in zip(missing, new)])
            for i, v in zip(missing, new):
                found[keys[i]] = v
        if not texts:
            return np.zeros((0, embedder.dimension), dtype="float32")
        return np.stack([found[k] for k in keys]).astype("float32")


def build_faiss(vectors: np.ndarray, approximate_above: int) -> faiss.Index:
    """Exact inner-product search for small collections, HNSW above the threshold."""
    dim = vectors.shape[1]
    if len(vectors) > approximate_above:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


class RagIndex:
    """Chunks + FAISS index for one document set, loaded from or saved to the cache."""

    def __init__(self, chunks: list[Chunk], index: faiss.Index, seconds: float, embedder):
        self.chunks, self.index, self.seconds, self.embedder = chunks, index, seconds, embedder

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.index, faiss.IndexHNSWFlat) else "flat"

    @classmethod
    def build(cls, docs: list[Document], embedder, size: int, overlap: int, approximate_above: int) -> "RagIndex":
        key = hash_json([[(d.id, hash_bytes(d.text)) for d in docs], embedder.fingerprint, size, overlap,
                         approximate_above, HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH])[:24]
        folder = cache_dir() / "indexes" / key
        if (folder / "index.faiss").exists():
            meta = json.loads((folder / "meta.json").read_text())
            index = faiss.read_index(str(folder / "index.faiss"))
            if index.d != embedder.dimension:
                raise ValueError(f"cached index {folder} has dimension {index.d}, but embedder "
                                 f"{embedder.display_name} produces {embedder.dimension}")
            return cls([Chunk(**c) for c in meta["chunks"]], index, meta["seconds"], embedder)
        t0 = time.perf_counter()
        chunks = chunk_documents(docs, embedder.model.tokenizer, size, overlap)
        vectors = EmbeddingStore(cache_dir() / "embeddings.sqlite").vectors(embedder, [c.text for c in chunks])
        index = build_faiss(vectors, approximate_above)
        seconds = time.perf_counter() - t0
        with atomic_dir(folder) as tmp:
            faiss.write_index(index, str(tmp / "index.faiss"))
            atomic_write_bytes(tmp / "meta.json", json.dumps(
                {"chunks": [asdict(c) for c in chunks], "seconds": seconds}).encode())
        return cls(chunks, index, seconds, embedder)

    def search(self, texts: list[str], k: int) -> list[list[Chunk]]:
        if not texts:
            return []
        scores, ids = self.index.search(self.embedder.encode(texts), min(k, len(self.chunks)))
        return [[self.chunks[i] for i in row if i >= 0] for row in ids]


def rag_user_message(chunks: list[Chunk], question: str) -> str:
    passages = "\n\n".join(
        f"[{n}] (source: {c.source}{' > ' + c.section if c.section else ''})\n{c.text}" for n, c in enumerate(chunks, 1)
    )
    return f"Use these passages to answer.\n\n{passages}\n\nQuestion: {question}"


class Rag(Strategy):
    name = "rag"
    description = "instructions + top-k retrieved passages (FAISS over the documents)"
    complexity = 3
    family = "rag"
    use_instructions = True
    few_shot = False

    def prepare_index(self) -> None:
        """Build (or load from the cache) the index of the task's documents, once per run."""
        self._hits: dict[str, list[Chunk]] = {}
        self.index = self.ctx.shared("rag-index", lambda: self._build(self.ctx.task.documents))

    def prepare(self):
        self.prepare_index()
        self.setup.index_seconds = self.index.seconds
        self.setup.details["index"] = {"kind": self.index.kind, "chunks": len(self.index.chunks)}
        self.shots = fixed_shots(self.ctx.task) if self.few_shot else []  # same as the few-shot row

    def _build(self, docs):
        spec = self.ctx.task.spec.rag
        if not docs:
            raise ValueError("the task names no documents, so retrieval strategies cannot run")
        return RagIndex.build(docs, self.ctx.embedder, spec.chunk_tokens, spec.chunk_overlap, spec.approximate_above)

    def refresh_documents(self, documents):
        self.index = self._build(documents)
        self._hits = {}

    def retrieve(self, text: str) -> list[Chunk]:
        if text not in self._hits:
            if len(self._hits) >= MEMO_LIMIT:  # a server sees endless new questions
                self._hits.clear()
            self._hits[text] = self.index.search([text], self.ctx.task.spec.rag.top_k)[0]
        return self._hits[text]

    def answer(self, inputs, temperature=0.0, sample_index=0, **kw):
        missing = [t for t in dict.fromkeys(inputs) if t not in self._hits]
        self._hits.update(zip(missing, self.index.search(missing, self.ctx.task.spec.rag.top_k)))
        return super().answer(inputs, temperature, sample_index, **kw)

    def sources(self, text):
        return [c.source for c in self.retrieve(text)]

    def messages(self, text, drop=0):
        instructions = self.ctx.task.instructions if self.use_instructions else ""
        shots = self.shots[: max(0, len(self.shots) - drop)]
        return fewshot_messages(instructions, shots, rag_user_message(self.retrieve(text), text))


class FewShotRag(Rag):
    name = "few-shot+rag"
    description = "instructions + k fixed examples + top-k retrieved passages"
    complexity = 4
    family = "rag"
    few_shot = True
