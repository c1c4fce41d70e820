"""RAG on top of a fine-tuned model: the adapter carries style, retrieval carries knowledge.

Its adapter is trained the way it will be used: with the passages retrieved for each
training question in its prompt (retrieval-aware fine-tuning, as in RAFT), so it
learns to read them and still keep the house format. An adapter that never saw
passages in training loses the format when they appear (measured on the support
sample: 32-40% against 98%). `finetune.retrieval_aware` says how: `separate` trains
its own adapter from scratch (prompts several times longer than the plain row's, so
about 3x its training time), `warm-start` trains the plain `lora` adapter one more
epoch with passages (the fast budget), `off` uses the plain adapter as is.
"""
from __future__ import annotations

from advisor.kinds import Family
from advisor.retrieval import rag_user_message
from strategies.finetune import task_adapter, train_on_task
from strategies.rag import Rag


class LoraRag(Rag):
    name = "lora+rag"
    description = "a LoRA adapter + top-k retrieved passages, without the instructions"
    complexity = 6
    family = Family.FINETUNE_RAG
    use_instructions = False

    def prepare(self):
        super().prepare()
        mode, gen = self.ctx.task.spec.finetune.retrieval_aware, self.generator
        plain, plain_metrics = task_adapter(self.ctx, gen) if mode != "separate" else (None, None)
        if mode == "off":
            self.folder, metrics = plain, plain_metrics
        elif mode == "warm-start":
            self.folder, metrics = self.ctx.shared(f"lora-adapter-rag-warm:{gen.fingerprint}", lambda: train_on_task(
                self.ctx, gen, self._with_passages, start_from=plain, epochs=1))
            self.setup.details["started_from"] = str(plain)
        else:
            self.folder, metrics = self.ctx.shared(f"lora-adapter-rag:{gen.fingerprint}",
                                                   lambda: train_on_task(self.ctx, gen, self._with_passages))
        # Making (or remaking) a warm-started adapter takes both trainings: the plain one, then the extra epoch.
        self.setup.train_seconds = metrics["train_seconds"] + (plain_metrics["train_seconds"] if mode == "warm-start" else 0)
        self.setup.details["training"] = metrics
        self.setup.details["adapter"] = str(self.folder)
        self.setup.details["retrieval_aware"] = mode
        self.setup.knowledge_in_weights = False  # knowledge lives in the documents

    def _with_passages(self, inputs: list[str]) -> list[str]:
        hits = self.index.search(inputs, self.ctx.task.spec.rag.top_k)
        return [rag_user_message(chunks, q) for chunks, q in zip(hits, inputs)]

    @property
    def adapter_path(self):
        return self.folder
