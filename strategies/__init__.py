"""Strategies: every module here is scanned, and each Strategy subclass with a name is a row.

Adding a strategy is one new file with one subclass; the run finds it by name.
Strategies from other packages register through the `advisor.strategies` entry
point group (see advisor/plugins.py).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from advisor import plugins
from advisor.kinds import Family

from strategies.base import Answer, Context, Setup, Strategy

if TYPE_CHECKING:
    from advisor.task import Task


class StrategyError(Exception):
    """A strategy name that no row has (bad input)."""


def families() -> dict[str, str]:
    """Strategy name -> family, what task validation checks names against."""
    return {name: str(cls.family) for name, cls in registry().items()}


def registry() -> dict[str, type[Strategy]]:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    found: dict[str, type[Strategy]] = {}
    stack = list(Strategy.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        # Only this package's classes: another module's subclass is a row only through an entry point.
        if "name" in cls.__dict__ and cls.__module__.startswith(f"{__name__}."):
            found[cls.name] = cls
    for ep_name, cls in plugins.load(plugins.STRATEGY_GROUP).items():
        if not (isinstance(cls, type) and issubclass(cls, Strategy) and "name" in cls.__dict__):
            raise TypeError(f"entry point {ep_name!r} in group {plugins.STRATEGY_GROUP!r} must name a Strategy "
                            f"subclass with a `name`, got {cls!r}")
        cls.family = Family(cls.family)  # a plug-in may spell its family as a plain string
        found[cls.name] = cls
    return dict(sorted(found.items(), key=lambda kv: kv[1].complexity))


def select_strategies(task: Task, names: list[str] | None) -> list[type[Strategy]]:
    """The rows to run: `names`, else the task's list, else all; retrieval rows only when there are documents."""
    known = registry()
    wanted = names or task.spec.strategies or list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise StrategyError(f"unknown strategies {unknown}; known: {', '.join(known)}")
    if not task.documents:
        wanted = [n for n in wanted if not known[n].family.retrieves]
    return [known[n] for n in wanted]


__all__ = ["Answer", "Context", "Setup", "Strategy", "StrategyError", "families", "registry", "select_strategies"]
