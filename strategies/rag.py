"""Retrieval-augmented rows: the instructions plus the top-k passages the retrieval engine finds."""
from __future__ import annotations

from advisor.kinds import Family
from advisor.retrieval import Chunk, RagIndex, rag_user_message
from strategies.base import Strategy, fewshot_messages
from strategies.prompting import fixed_shots

MEMO_LIMIT = 10_000  # retrieved passages kept per question; a long-running server must not grow without end

class Rag(Strategy):
    name = "rag"
    description = "instructions + top-k retrieved passages (FAISS over the documents)"
    complexity = 3
    family = Family.RAG
    use_instructions = True
    few_shot = False

    def prepare_shared(self) -> None:
        """Build (or load from the cache) the index of the task's documents, once per run."""
        self._hits: dict[str, list[Chunk]] = {}
        self.index = self.ctx.shared("rag-index", lambda: self._build(self.ctx.task.documents))

    def prepare(self):
        self.prepare_shared()
        self.setup.index_seconds = self.index.seconds
        self.setup.details["index"] = {"kind": self.index.kind, "chunks": len(self.index.chunks)}
        self.shots = fixed_shots(self.ctx.task, self.ctx.seed) if self.few_shot else []  # same as the few-shot row

    def _build(self, docs):
        spec = self.ctx.task.spec.rag
        if not docs:
            raise ValueError("the task names no documents, so retrieval strategies cannot run")
        return RagIndex.build(docs, self.ctx.embedder, spec.chunk_tokens, spec.chunk_overlap, spec.approximate_above)

    def refresh_documents(self, documents):
        self.index = self._build(documents)
        self._hits = {}

    def search_queries(self, inputs: list[str]) -> list[str]:
        """The texts retrieval embeds for these questions: the questions themselves.
        A row that searches with something else (a rewritten query, a drafted answer) overrides this."""
        return inputs

    def retrieve(self, text: str) -> list[Chunk]:
        if text not in self._hits:
            if len(self._hits) >= MEMO_LIMIT:  # a server sees endless new questions
                self._hits.clear()
            self._hits[text] = self.index.search(self.search_queries([text]), self.ctx.task.spec.rag.top_k)[0]
        return self._hits[text]

    def answer(self, inputs, temperature=0.0, sample_index=0, **kw):
        missing = [t for t in dict.fromkeys(inputs) if t not in self._hits]
        if missing:  # every question's passages in one batch of embeddings
            self._hits.update(zip(missing, self.index.search(self.search_queries(missing), self.ctx.task.spec.rag.top_k)))
        return super().answer(inputs, temperature, sample_index, **kw)

    def sources(self, text):
        return [c.source for c in self.retrieve(text)]

    def passages(self, text):
        return [c.text for c in self.retrieve(text)]

    def messages(self, text, drop=0):
        instructions = self.ctx.task.instructions if self.use_instructions else ""
        shots = self.shots[: max(0, len(self.shots) - drop)]
        return fewshot_messages(instructions, shots, rag_user_message(self.retrieve(text), text))


class FewShotRag(Rag):
    name = "few-shot+rag"
    description = "instructions + k fixed examples + top-k retrieved passages"
    complexity = 4
    family = Family.RAG
    few_shot = True
