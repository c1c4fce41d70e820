"""`advisor review RUN`: a person labels the answers the verdict turns on, one key per answer.

The deciding answers come first: those that make the verdict's fragility (when the run
states it), then the items on which the pick and its closest rival disagree, scores
within `NEAR` of the semantic threshold, and judge-scored answers. Each is shown with
its question, references, the row's answer, its automatic score and why; the person
presses r (right), w (wrong), s (skip) or q (quit). Every key is saved at once
(RUN/labels.json, atomically), so a second `advisor review` starts at the first
unlabelled answer. On the way out the run is re-decided with the labels
(advisor.labels, run.analyze) and its results and reports are written again.
"""
from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from advisor import labels as store
from advisor.cache import atomic_write_text
from advisor.results import Results, ReviewLabel
from advisor.task import EconomicsSpec

NEAR = 0.05  # a semantic similarity this close to its threshold is a coin toss of the embedding
KEYS = {"r": "right", "w": "wrong", "s": "skip"}


@dataclass(frozen=True)
class Item:
    """One row's answer to one eval item, and why it is shown."""

    id: str
    row: str
    why: str
    sample: str = "deciding"


# ---------------------------------------------------------------- what to show, in order


def rival(results: Results) -> str | None:
    """The row the verdict turns on besides the pick: the evidence's pair, else the next most accurate row."""
    rec = results.recommendation
    if rec.evidence is not None and rec.evidence.pair and rec.strategy in rec.evidence.pair:
        return next(n for n in rec.evidence.pair if n != rec.strategy) if len(set(rec.evidence.pair)) == 2 else None
    others = [s for s in results.strategies if s.name != rec.strategy]
    return max(others, key=lambda s: s.accuracy.mean).name if others else None


def deciding(results: Results) -> list[Item]:
    """The answers that decide the verdict, most decisive first, each once."""
    rec = results.recommendation
    pick, other = rec.strategy, rival(results)
    fragility = results.model_dump(mode="json")["recommendation"].get("fragility") or {}
    found = [Item(x["id"], x["row"], "one of the items whose rescoring changes the verdict (fragility)")
             for x in fragility.get("items") or ()]
    counted = [ex for ex in results.examples if ex.counted is not False]  # the items the verdict is decided on
    if other is not None:
        for ex in counted:
            if pick in ex.answers and other in ex.answers and ex.answers[pick].score != ex.answers[other].score:
                found += [Item(ex.id, name, f"{pick} and {other} disagree here") for name in (pick, other)]
    threshold = results.scoring.semantic_threshold
    for ex in counted:
        for name, a in ex.answers.items():
            sim = a.scoring.similarity if a.scoring else None
            if sim is not None and abs(sim - threshold) <= NEAR:
                found.append(Item(ex.id, name, f"similarity {sim:.2f}, within {NEAR:g} of the threshold {threshold:g}"))
    for ex in results.examples:
        found += [Item(ex.id, name, "scored by the LLM judge") for name, a in ex.answers.items()
                  if a.scoring and a.scoring.judge is not None]
    seen: set[tuple[str, str]] = set()
    return [x for x in found if (x.id, x.row) not in seen and not seen.add((x.id, x.row))]


def random_sample(results: Results, n: int) -> list[Item]:
    """Every row's answer to `n` eval items drawn at random (seeded by the run's seed): what PPI needs."""
    ids = [ex.id for ex in results.examples]
    drawn = set(random.Random(results.run.seed).sample(ids, min(n, len(ids))))
    return [Item(ex.id, name, "random sample", "random") for ex in results.examples if ex.id in drawn
            for name in ex.answers]


# ---------------------------------------------------------------- the terminal


def card(results: Results, item: Item, position: int, total: int, done: str | None) -> Panel:
    """One answer as the person sees it: question, references, answer, automatic score and why (data as text)."""
    from advisor.report import item_detail  # the same words the report uses for how an answer was scored

    ex = next(e for e in results.examples if e.id == item.id)
    a = ex.answers[item.row]
    auto = a.auto_score if a.auto_score is not None else a.score
    parts = ", ".join(f"{m} {v:.2f}" for m, v in (a.scoring.parts.items() if a.scoring else ()))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("question", Text(ex.input))
    grid.add_row("reference", Text(" | ".join(ex.expected) or "(none)"))
    grid.add_row(f"{item.row} said", Text(a.text, style="cyan"))
    grid.add_row("automatic", Text(f"{auto:.2f}" + (f"  ({parts})" if parts else "") +
                                   ("" if ex.counted is not False else "  (not counted: uncalibrated judge)")))
    why = item_detail(results, a)
    if why:
        grid.add_row("why", Text(why))
    if done is not None:
        grid.add_row("labelled", Text(done, style="yellow"))
    title = Text(f"{item.id} · {item.row}   {position} of {total}")
    return Panel(Group(Text(f"shown because: {item.why}", style="dim"), grid), title=title, title_align="left",
                 box=box.ROUNDED, subtitle=Text("r right · w wrong · s skip · q quit"), subtitle_align="left")


def read_key(stream: TextIO) -> str:
    """One key press, without Enter on a terminal (cbreak: Ctrl-C still interrupts); '' at end of input."""
    if not stream.isatty():
        return stream.read(1)
    import termios
    import tty

    fd = stream.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # not the default TCSAFLUSH: it drops keys typed ahead
        return os.read(fd, 1).decode("utf-8", "replace")
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def session(run_dir: Path, results: Results, queue: list[Item], labels: list[dict], reviewer: str,
            console: Console, key: Callable[[], str]) -> list[dict]:
    """Show each unlabelled answer of the queue and save the person's key at once; q or end of input stops."""
    data = results.model_dump(mode="json")
    have = {(x["id"], x["row"]): x["label"] for x in labels}
    todo = [x for x in queue if (x.id, x.row) not in have]
    console.print(f"{len(queue)} answers to review, {len(queue) - len(todo)} labelled already, {len(todo)} to go",
                  highlight=False)
    for item in todo:
        console.print(card(results, item, queue.index(item) + 1, len(queue), None))
        while (pressed := key().lower()) not in (*KEYS, "q", ""):
            console.print(f"  {pressed!r}: press r, w, s or q", style="yellow", highlight=False)
        if pressed in ("q", ""):
            break
        labels = store.merge(labels, [store.label(item.id, item.row, KEYS[pressed], reviewer, "", item.sample)])
        store.save(run_dir, data, labels)
        console.print(Text(f"  {KEYS[pressed]}", style="green" if pressed == "r" else "red" if pressed == "w" else "dim"))
    return labels


# ---------------------------------------------------------------- re-deciding, and what the labels become


def current_labels(run_dir: Path, results: Results) -> list[dict]:
    """The run's labels: RUN/labels.json, else those results.json kept ([] when none)."""
    data = results.model_dump(mode="json")
    if (Path(run_dir) / store.FILE).exists():
        return store.load(run_dir, data)
    return list((data.get("review") or {}).get("labels") or ())


def redecide(results: Results, labels: list[dict], spec: EconomicsSpec | None = None) -> Results:
    """The run's statistics and verdict with these labels in place of their answers' automatic scores."""
    from advisor import run as runner  # torch and the models' libraries: only once labels are there to apply

    spec = spec or EconomicsSpec.model_validate(results.assumptions.model_dump())
    return runner.analyze(results, spec, [ReviewLabel.model_validate(x) for x in labels])


def human_scores(results: Results, labels: list[dict]) -> list[dict]:
    """The labels as eval rows' `human_scores` (id, input, and the labelled answers with 1 or 0), for the judge's
    calibration: merge each row's `human_scores` into the eval row with the same id."""
    value = {(x["id"], x["row"]): store.VALUE[x["label"]] for x in labels if x["label"] in store.VALUE}
    rows = []
    for ex in results.examples:
        scored = {ex.answers[row].text: v for (i, row), v in value.items() if i == ex.id}
        if scored:
            rows.append({"id": ex.id, "input": ex.input,
                         "human_scores": [{"answer": text, "score": v} for text, v in scored.items()]})
    return rows


def write_human_scores(path: Path, results: Results, labels: list[dict]) -> int:
    rows = human_scores(results, labels)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return sum(len(r["human_scores"]) for r in rows)


def keyboard() -> Callable[[], str]:
    return lambda: read_key(sys.stdin)
