"""LoRA fine-tuning row: an adapter trained on `train`, answering without the long instructions.

The training itself is the engine in advisor/training.py; this row says what the
adapter learns from (the bare questions) and how it is asked (no system prompt).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from advisor.kinds import Family
from strategies.base import Strategy, fewshot_messages

if TYPE_CHECKING:  # a type only: checking a task must not load torch
    from advisor.models import Generator


def train_on_task(ctx, gen: Generator, user_messages: Callable[[list[str]], list[str]],
                  start_from: Path | None = None, epochs: int | None = None) -> tuple[Path, dict]:
    """Train on the task's train split; `user_messages` turns inputs into what the model will see.

    `start_from` / `epochs`: continue a saved adapter for that many epochs instead of training anew.
    """
    from advisor.training import split_train_val, train_lora  # here, so listing the strategies never loads torch

    task = ctx.task
    spec = task.spec.finetune if epochs is None else task.spec.finetune.model_copy(update={"num_train_epochs": epochs})
    train, val = split_train_val(task.train, spec.val_fraction, ctx.seed)

    def pairs(rows):
        return list(zip(user_messages([e.input for e in rows]), [e.output for e in rows]))

    return train_lora(gen, pairs(train), spec, ctx.seed, pairs(val), reuse_only=ctx.reuse_only, start_from=start_from)


def task_adapter(ctx, gen: Generator) -> tuple[Path, dict]:
    """The plain LoRA adapter for this task on `gen`, trained once per run and shared by lora and lora+rag."""
    return ctx.shared(f"lora-adapter:{gen.fingerprint}", lambda: train_on_task(ctx, gen, lambda inputs: inputs))


class Lora(Strategy):
    name = "lora"
    description = "LoRA adapter trained on train; answers without the instructions"
    complexity = 5
    family = Family.FINETUNE
    use_instructions = False

    def prepare(self):
        self.folder, self.metrics = task_adapter(self.ctx, self.generator)
        self.setup.train_seconds = self.metrics["train_seconds"]
        self.setup.knowledge_in_weights = True  # a knowledge change needs a retrain
        self.setup.details["training"] = self.metrics
        self.setup.details["adapter"] = str(self.folder)

    @property
    def adapter_path(self):
        return self.folder

    def messages(self, text, drop=0):
        # No instructions: the adapter learned the house style from the examples.
        return fewshot_messages("", [], text)
