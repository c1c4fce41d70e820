"""Progress bars for the long stages, advanced from where the work is done.

The run shows a display (a rich `Progress`); a stage opens a bar with its amount of
work, and the engines report each finished piece: the generator each batch of
answers, the trainer each optimizer step. The current bar travels in a context
variable, so the rows in between (strategies, experiments, plug-ins) need no progress
argument, and code run outside a display (tests, serving) reports to nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from rich.progress import Progress

_display: ContextVar[Progress | None] = ContextVar("advisor_progress_display", default=None)
_bar: ContextVar[int | None] = ContextVar("advisor_progress_bar", default=None)


@contextmanager
def showing(display: Progress) -> Iterator[Progress]:
    """Bars opened inside this block appear on `display`."""
    token = _display.set(display)
    try:
        yield display
    finally:
        _display.reset(token)


@contextmanager
def bar(description: str, total: float | None) -> Iterator[None]:
    """A bar for one stage; `advance` inside the block moves it. Nested bars take over until they close."""
    display = _display.get()
    if display is None:
        yield
        return
    task_id = display.add_task(description, total=total)
    token = _bar.set(task_id)
    try:
        yield
    finally:
        _bar.reset(token)
        display.stop_task(task_id)


def advance(amount: float = 1) -> None:
    """Report finished work to the innermost open bar, if any."""
    display, task_id = _display.get(), _bar.get()
    if display is not None and task_id is not None:
        display.advance(task_id, amount)


def describe(description: str) -> None:
    """Rename the innermost open bar (a stage that ends says how it ended)."""
    display, task_id = _display.get(), _bar.get()
    if display is not None and task_id is not None:
        display.update(task_id, description=description)
