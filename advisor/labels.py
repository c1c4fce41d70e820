"""People's labels on a run's answers (`advisor review`): kept with the run, and what the verdict is re-decided on.

A label says one row's answer to one eval item is right or wrong (or was skipped). It
replaces that answer's automatic score, which stays visible as `auto_score`; an item
that only an uncalibrated judge scored counts once every row's answer on it is
labelled. `apply_labels` is the one call at the top of `run.analyze`, so `advisor
report` and `advisor roi` re-decide with the labels and say how the verdict moved.

The labels also measure the automatic scoring: each method's agreement with the people
(Cohen's kappa, `judge.kappa_interval`), and, when people labelled a random sample of
items, the prediction-powered estimate of each row's accuracy (`ppi`).

Files: RUN/labels.json (written atomically after every label) and, for a team, CSV
with the columns id, row, label, reviewer, note.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from advisor.cache import atomic_write_text
from advisor.results import (Estimate, ExampleResult, Measured, MethodAgreement, Recommendation, Review, ReviewLabel,
                             VerdictState)

M = TypeVar("M", bound=Measured)

FILE = "labels.json"
LABELS = ("right", "wrong", "skip")
VALUE = {"right": 1.0, "wrong": 0.0}
SAMPLES = ("deciding", "random")
CSV_COLUMNS = ("id", "row", "label", "reviewer", "note")
Z = 1.959963984540054  # two-sided 95%


class LabelError(Exception):
    """A labels file or CSV that cannot be read, or labels that do not belong to this run (bad input)."""


# ---------------------------------------------------------------- the labels file


def label(id: str, row: str, value: str, reviewer: str = "", note: str = "", sample: str = "deciding") -> dict:
    """One label as results.json and labels.json keep it (results.ReviewLabel)."""
    return {"id": id, "row": row, "label": value, "reviewer": reviewer, "note": note, "sample": sample}


def merge(labels: list[dict], new: list[dict]) -> list[dict]:
    """`labels` with `new` added; a new label for the same (item, row) replaces the old one."""
    by_key = {(x["id"], x["row"]): x for x in labels}
    for x in new:
        by_key.pop((x["id"], x["row"]), None)  # moves to the end: the file lists labels in the order given
        by_key[(x["id"], x["row"])] = x
    return list(by_key.values())


def answers_of(results: dict) -> dict[tuple[str, str], dict]:
    """(eval id, row) -> that row's answer, for every answer in the run."""
    return {(ex["id"], name): a for ex in results["examples"] for name, a in ex["answers"].items()}


def check(labels: list[dict], results: dict, where: Callable[[int], str]) -> None:
    """Every label names an answer of this run and a known label; `where(i)` says where label i came from."""
    known = answers_of(results)
    rows = {s["name"] for s in results["strategies"]}
    ids = {ex["id"] for ex in results["examples"]}
    for i, x in enumerate(labels):
        if x["id"] not in ids:
            raise LabelError(f"{where(i)}: eval item {x['id']!r} is not in this run")
        if x["row"] not in rows:
            raise LabelError(f"{where(i)}: row {x['row']!r} is not in this run (rows: {', '.join(sorted(rows))})")
        if (x["id"], x["row"]) not in known:
            raise LabelError(f"{where(i)}: row {x['row']!r} has no answer to {x['id']!r}")
        if x["label"] not in LABELS:
            raise LabelError(f"{where(i)}: label {x['label']!r} is not one of {', '.join(LABELS)}")
        if x.get("sample", "deciding") not in SAMPLES:
            raise LabelError(f"{where(i)}: sample {x['sample']!r} is not one of {', '.join(SAMPLES)}")


def load(run_dir: Path, results: dict) -> list[dict]:
    """The run folder's labels ([] when none); refused when they were made on another run in this folder."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabelError(f"{path}: cannot read the labels ({e}); fix or delete it") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("labels"), list):
        raise LabelError(f"{path}: expected {{\"run\": ..., \"labels\": [...]}}; fix or delete it")
    if raw.get("run") != results["run"]["started"]:
        raise LabelError(f"{path}: these labels belong to the run started {raw.get('run')}, not to this one "
                         f"(started {results['run']['started']}); move the file away to review this run")
    try:
        labels = [label(x["id"], x["row"], x["label"], x.get("reviewer", ""), x.get("note", ""),
                        x.get("sample", "deciding")) for x in raw["labels"]]
    except (TypeError, KeyError) as e:
        raise LabelError(f"{path}: a label lacks {e}; each needs id, row and label") from None
    check(labels, results, lambda i: f"{path}: labels[{i}]")
    return labels


def save(run_dir: Path, results: dict, labels: list[dict]) -> Path:
    """Write RUN/labels.json atomically (a killed write leaves the old file)."""
    path = Path(run_dir) / FILE
    atomic_write_text(path, json.dumps({"run": results["run"]["started"], "labels": labels}, indent=1) + "\n")
    return path


def to_csv(labels: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for x in labels:
        w.writerow([x[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def from_csv(path: Path, results: dict) -> list[dict]:
    """Labels from a team's CSV (id, row, label[, reviewer, note]); every problem names its line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"{path}: cannot read ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("id", "row", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise LabelError(f"{path}: line 1: the header lacks {', '.join(missing)} "
                         f"(columns: {', '.join(CSV_COLUMNS)})")
    labels, lines = [], []
    for r in reader:
        if None in r or any(v is None for v in r.values()):
            raise LabelError(f"{path}: line {reader.line_num}: expected {len(reader.fieldnames)} cells, as the header")
        value = r["label"].strip().lower()
        labels.append(label(r["id"].strip(), r["row"].strip(), value, (r.get("reviewer") or "").strip(),
                            (r.get("note") or "").strip()))
        lines.append(reader.line_num)
    check(labels, results, lambda i: f"{path}: line {lines[i]}")
    return labels


# ---------------------------------------------------------------- re-deciding with the labels


def apply_labels(results: M, labels: Sequence[ReviewLabel], verdict_without: Callable[[Measured], Recommendation]) -> M:
    """The run with the people's labels in place of their answers' automatic scores, and `review` saying so.

    Idempotent: scores an earlier review replaced are first put back from `auto_score`. `verdict_without`
    decides the run without labels (run.analyze), so the review section can say how the verdict moved.
    """
    examples = tuple(ex.model_copy(update={"answers": {
        name: a if a.auto_score is None else a.model_copy(update={"score": a.auto_score, "auto_score": None})
        for name, a in ex.answers.items()}}) for ex in results.examples)
    plain = results.model_copy(update={"examples": examples, "review": None})
    if not labels:
        return plain
    before = verdict_without(plain)
    answers = {(ex.id, name): a for ex in plain.examples for name, a in ex.answers.items()}
    marked = [x for x in labels if x.label in VALUE]
    changed = 0
    for x in marked:
        a = answers[(x.id, x.row)]
        answers[(x.id, x.row)] = a.model_copy(update={"auto_score": a.score, "score": VALUE[x.label]})
        changed += VALUE[x.label] != a.score
    labelled = plain.model_copy(update={"examples": tuple(
        ex.model_copy(update={"answers": {name: answers[(ex.id, name)] for name in ex.answers}})
        for ex in plain.examples)})
    review = Review(labels=tuple(labels), items=len({x.id for x in marked}), answers=len(marked), changed=changed,
                    before=VerdictState(strategy=before.strategy, status=before.status),
                    agreement=agreement(labelled, marked), ppi=ppi(labelled, marked))
    return labelled.model_copy(update={"review": review})


def counts(ex: ExampleResult) -> bool:
    """Whether an item's scores count: not only an uncalibrated judge scored it, or people labelled every row."""
    return ex.counted is not False or all(a.auto_score is not None for a in ex.answers.values())


# ---------------------------------------------------------------- the automatic scoring against the people


def agreement(results: Measured, marked: list[ReviewLabel]) -> tuple[MethodAgreement, ...]:
    """Each automatic method's agreement with the people on the labelled answers: the score as it counted
    (`automatic score`) and each method of the item's scoring (`parts`), a score at or above 0.5 (token F1:
    its threshold) read as right. Cohen's kappa with its 95% interval (judge.kappa_interval)."""
    from advisor.scoring.judge import kappa_interval

    answers = {(ex.id, name): a for ex in results.examples for name, a in ex.answers.items()}
    pairs: dict[str, list[tuple[int, int]]] = {}
    for x in marked:
        a = answers[(x.id, x.row)]
        human = int(VALUE[x.label] >= 0.5)
        pairs.setdefault("automatic score", []).append((human, int(a.auto_score >= 0.5)))
        for method, part in (a.scoring.parts if a.scoring else {}).items():
            cut = results.scoring.f1_threshold if method == "f1" else 0.5
            pairs.setdefault(method, []).append((human, int(part >= cut)))
    out = []
    for method, hj in pairs.items():
        h, j = [p[0] for p in hj], [p[1] for p in hj]
        kappa, low, high = kappa_interval(h, j, results.run.seed)
        out.append(MethodAgreement(method=method, n=len(hj), agreement=float(np.mean([a == b for a, b in hj])),
                                   kappa=kappa, low=low, high=high))
    return tuple(out)


def ppi(results: Measured, marked: list[ReviewLabel]) -> dict[str, Estimate] | None:
    """Prediction-powered accuracy per row (Angelopoulos et al. 2023), from the labels on a random sample.

    The automatic scores' mean over every counted item, corrected by the mean error (label minus automatic
    score) on the randomly sampled items people labelled; its 95% interval adds both variances (the
    normal-approximation PPI interval for a mean). Only labels of `advisor review --random` enter: the
    deciding items were chosen for being doubtful, and their errors would not be the average error.
    None when no row has two randomly sampled labels."""
    random = {(x.id, x.row): VALUE[x.label] for x in marked if x.sample == "random"}
    out = {}
    for s in results.strategies:
        name = s.name
        auto = [a.auto_score if a.auto_score is not None else a.score
                for ex in results.examples if counts(ex) and (a := ex.answers.get(name)) is not None]
        errors = [y - ex.answers[name].auto_score for ex in results.examples
                  if (y := random.get((ex.id, name))) is not None]
        if len(errors) < 2 or len(auto) < 2:
            continue
        mean = float(np.clip(np.mean(auto) + np.mean(errors), 0, 1))
        half = Z * math.sqrt(np.var(auto, ddof=1) / len(auto) + np.var(errors, ddof=1) / len(errors))
        out[name] = Estimate(mean=mean, low=max(0.0, mean - half), high=min(1.0, mean + half), n=len(errors))
    return out or None
