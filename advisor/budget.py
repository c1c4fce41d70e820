"""Run budgets: how deep a run measures, as presets for settings a task file leaves unset.

A first run should answer in minutes; `full` keeps every measurement at the depth a
decision deserves. A budget only fills settings the task file does not set (an
explicit setting always wins), and the run records which it filled, so the report can
say what the fast run left out and `advisor serve` rebuilds the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from advisor.task import Task


@dataclass(frozen=True)
class Budget:
    name: str
    settings: dict[str, Any]  # "section.field" -> value, applied where the task file sets none
    left_out: str  # what this budget measures less deeply than `full`, in words ("" for full)


BUDGETS = {
    "fast": Budget("fast", {"finetune.retrieval_aware": "warm-start"},
                   "lora+rag's adapter is the lora adapter trained one more epoch with retrieved passages in its "
                   "prompts, not a separate adapter trained from scratch for every epoch (--budget full)"),
    "full": Budget("full", {"finetune.retrieval_aware": "separate"}, ""),
}
DEFAULT = "fast"
BudgetName = Literal["fast", "full"]  # the keys of BUDGETS, for the command line


def apply_budget(task: Task, name: str) -> tuple[Task, dict[str, Any]]:
    """The task with the budget's settings where its file set none; and the settings the budget filled."""
    budget = BUDGETS[name]
    spec, filled = task.spec, {}
    for path, value in budget.settings.items():
        section, field = path.split(".")
        part = getattr(spec, section)
        if field in part.model_fields_set or getattr(part, field) == value:
            continue
        spec = spec.model_copy(update={section: part.model_copy(update={field: value})})
        filled[path] = value
    return replace(task, spec=spec), filled
