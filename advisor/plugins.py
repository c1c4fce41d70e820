"""Plug-ins: custom strategies and scorers come from installed Python packages, through entry points.

A task file only *names* a strategy or a scoring method; the code behind a name is
a package the user chose to install and register, never text from the task file.

    # pyproject.toml of your plug-in package
    [project.entry-points."advisor.strategies"]
    my-row = "my_package.rows:MyStrategy"      # a strategies.Strategy subclass
    [project.entry-points."advisor.scorers"]
    my-metric = "my_package.metrics:score"     # score(answer: str, example) -> float in [0, 1]
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

STRATEGY_GROUP = "advisor.strategies"
SCORER_GROUP = "advisor.scorers"


def names(group: str) -> list[str]:
    """Registered names, without importing any plug-in code."""
    return sorted(ep.name for ep in entry_points(group=group))


def load(group: str) -> dict[str, Any]:
    return {ep.name: ep.load() for ep in entry_points(group=group)}


def scorer(name: str) -> Callable[[str, Any], float]:
    found = [ep for ep in entry_points(group=SCORER_GROUP) if ep.name == name]
    if not found:
        raise ValueError(f"unknown scoring method {name!r}: not built in and no plug-in registers it")
    return found[0].load()
