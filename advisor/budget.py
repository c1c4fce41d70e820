"""Run budgets: how deep a run measures, as presets for settings a task file leaves unset.

A first run should answer in minutes; `full` keeps every measurement at the depth a
decision deserves. A budget only fills settings the task file does not set (an
explicit setting always wins), and the run records which it filled, so the report can
say what the fast run left out and `advisor serve` rebuilds the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Iterable

from advisor.kinds import Family
from advisor.task import Task


@dataclass(frozen=True)
class Setting:
    value: Any
    families: frozenset[Family]  # the rows it changes: a run without such a row does not record it as filled
    left_out: str  # what it measures less deeply than `full`, in words


@dataclass(frozen=True)
class Budget:
    name: str
    settings: dict[str, Setting]  # "section.field" -> setting, applied where the task file sets none

    @property
    def left_out(self) -> str:
        return left_out(self.settings.values())


def left_out(settings: Iterable[Setting]) -> str:
    """What these settings measure less deeply than `full`, in one line ("" for none)."""
    return "; ".join(s.left_out for s in settings if s.left_out)


FINETUNED = frozenset({Family.FINETUNE, Family.FINETUNE_RAG})
EVERY_ROW = frozenset(Family)
BUDGETS = {
    "fast": Budget("fast", {
        "finetune.retrieval_aware": Setting(
            "warm-start", frozenset({Family.FINETUNE_RAG}),
            "lora+rag's adapter is the lora adapter trained one more epoch with retrieved passages in its prompts, "
            "not a separate adapter trained from scratch for every epoch"),
        # CPU dropout draws a random number per activation: ~30% of a training step on 2 cores (benchmarks/README.md).
        "finetune.lora_dropout": Setting(
            0.0, FINETUNED, "adapters train without LoRA dropout (0.05 under --budget full), about a third faster"),
        # Latency is measured anew on every run, never cached: in a warm run these probes were 30 of its 53 s.
        "latency.requests": Setting(
            1, EVERY_ROW, "latency is one single request per row (2 under --budget full), so p50 = p95"),
    }),
    "full": Budget("full", {
        "finetune.retrieval_aware": Setting("separate", frozenset({Family.FINETUNE_RAG}), ""),
        "finetune.lora_dropout": Setting(0.05, FINETUNED, ""),
        "latency.requests": Setting(2, EVERY_ROW, ""),
    }),
}
DEFAULT = "fast"
BudgetName = Enum("BudgetName", {name: name for name in BUDGETS}, type=str)  # for the command line


def apply_budget(task: Task, name: str) -> tuple[Task, dict[str, Any]]:
    """The task with the budget's settings where its file set none; and the settings the budget filled."""
    budget = BUDGETS[name]
    spec, filled = task.spec, {}
    for path, setting in budget.settings.items():
        section, field = path.split(".")
        part = getattr(spec, section)
        if field in part.model_fields_set or getattr(part, field) == setting.value:
            continue
        spec = spec.model_copy(update={section: part.model_copy(update={field: setting.value})})
        filled[path] = setting.value
    return replace(task, spec=spec), filled


def recorded(name: str, filled: dict[str, Any], families: Iterable[Family]) -> dict:
    """What results.json records of a run's budget: the settings it filled that change one of the run's rows."""
    families = set(families)
    settings = BUDGETS[name].settings
    used = {path: v for path, v in filled.items() if settings[path].families & families}
    return {"name": name, "filled": used, "left_out": left_out(settings[p] for p in used)}
