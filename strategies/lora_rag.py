"""RAG on top of a fine-tuned model: the adapter carries style, retrieval carries knowledge.

By default this row gets its own adapter, trained the way it will be used: with
the passages retrieved for each training question in its prompt (retrieval-aware
fine-tuning, as in RAFT), so it learns to read them and still keep the house
format. An adapter that never saw passages in training loses the format when they
appear (measured on the support sample: 32-40% against 98%). Its prompts are several
times longer, so its training took about 6x the plain adapter's time on the support
sample (2 CPU cores); `finetune.retrieval_aware: false` reuses the `lora` adapter instead.
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
        if self.ctx.task.spec.finetune.retrieval_aware:
            self.folder, metrics = self.ctx.shared(f"lora-adapter-rag:{self.generator.fingerprint}",
                                                   self._train_with_passages)
        else:
            self.folder, metrics = task_adapter(self.ctx, self.generator)  # the `lora` row's adapter, trained once
        self.setup.train_seconds = metrics["train_seconds"]
        self.setup.details["training"] = metrics
        self.setup.details["adapter"] = str(self.folder)
        self.setup.knowledge_in_weights = False  # knowledge lives in the documents

    def _train_with_passages(self):
        def with_passages(inputs):
            hits = self.index.search(inputs, self.ctx.task.spec.rag.top_k)
            return [rag_user_message(chunks, q) for chunks, q in zip(hits, inputs)]

        return train_on_task(self.ctx, self.generator, with_passages)

    @property
    def adapter_path(self):
        return self.folder
