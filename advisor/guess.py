"""Guessing a task from data a person already has, and checking that a task's choices fit its data.

`advisor init --from` guesses three things and says why for each:

- which column holds what, from two kinds of evidence: the words of a column's name (split at spaces,
  underscores, hyphens and camelCase, and matched against synonyms, so "Ideal answer", "agent_reply" and
  "ticketText" are found) and what the column holds (long free text, short values, a few labels,
  numbers, unique ids, JSON objects, chat turns);
- how many rows to hold out as eval: at least the verdict rule's minimum (recommend.MIN_EVAL_ITEMS),
  with the smallest accuracy gap that many items can detect;
- a scoring method that fits the answers: a few labels `exact`, short answers `contains`, whole
  sentences `semantic`, JSON objects `json_fields`.

`advisor validate` and `advisor run --dry-run` apply the same rules to any task (`warnings`), so what init
chooses, validate accepts.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from statistics import median

from advisor.loaders import Rows
from advisor.recommend import MIN_EVAL_ITEMS
from advisor.stats import detectable_difference, items_needed
from advisor.task import DEFAULT_EVAL_FRACTION, Example, Task, method_names, split_examples

# ------------------------------------------------------------------ columns

# Words in a column's name that say which task field it holds. A word may say two things ("label": the
# answer of a classifier, or a tag); the column's contents and the other columns decide.
SYNONYMS = {
    "messages": {"messages", "conversations", "conversation", "chat", "dialogue", "dialog", "turns"},
    "input": {"input", "question", "prompt", "query", "ticket", "message", "customer", "request", "text",
              "instruction", "inquiry", "enquiry", "utterance", "user", "body", "problem", "issue", "q", "ask"},
    "output": {"output", "answer", "reply", "response", "completion", "ideal", "reference", "target", "label",
               "agent", "resolution", "assistant", "gold", "expected", "solution", "a", "ground", "truth"},
    "answers": {"answers", "references", "aliases", "accepted"},
    "tags": {"tags", "tag", "category", "categories", "label", "labels", "type", "intent", "topic", "class",
             "kind", "group"},
    "id": {"id", "uid", "uuid", "qid", "key"},
    "source": {"source", "document", "doc", "passage"},
    "paraphrases": {"paraphrases", "rewordings"},
    "choices": {"choices", "options"},
}
# How well each kind of contents fits a field (0: never). Fields missing here are taken by name only.
CONTENT_FIT = {
    "messages": {"chat": 1.0},
    "input": {"text": 1.0, "short": 0.5, "json": 0.5, "label": 0.2, "number": 0.1},
    "output": {"text": 1.0, "short": 1.0, "json": 1.0, "label": 0.5, "number": 0.5, "id": 0.3},
    "tags": {"label": 1.0, "list": 0.6},
    "id": {"id": 1.0},
}
NAMED_ONLY = ("answers", "source", "paraphrases", "choices")  # too rare to take by contents alone
SHORT_WORDS = 3  # median words of a column of short values (a label, a price, a name)


@dataclass(frozen=True)
class Column:
    """What one column holds, in the terms the guess uses."""

    name: str
    kind: str  # chat | json | list | id | number | label | short | text | empty
    words: float  # median words of its values
    distinct: int
    filled: int  # rows with a value
    questions: float  # share of values that end with "?"
    examples: tuple[str, ...]  # the first values, shortened for a table

    def describe(self) -> str:
        what = {"chat": "chat turns (role, content)", "json": "JSON objects", "list": "lists",
                "id": "unique ids", "number": "numbers", "label": f"{self.distinct} distinct short labels",
                "short": f"short values (median {self.words:g} words)",
                "text": f"free text (median {self.words:g} words)", "empty": "no values"}[self.kind]
        return what + (f", {self.questions:.0%} end with '?'" if self.questions >= 0.5 else "")


@dataclass(frozen=True)
class Guess:
    mapping: dict[str, str]  # task field -> column
    reasons: dict[str, str]  # task field -> why that column
    sure: bool  # the names say it: input and output each found by a word of its name, no other column as likely
    columns: tuple[Column, ...]


def name_words(name: str) -> list[str]:
    """'Ideal answer' -> [ideal, answer]; 'agentReply' -> [agent, reply]; 'ticket_ID' -> [ticket, id]."""
    words = []
    for part in re.split(r"[^0-9A-Za-z]+", name):
        words += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", part)
    return [w.lower() for w in words]


def name_score(field_name: str, column: str) -> int:
    """3: the name is the field's; 2: its last word (the head noun) means the field; 1: another word does."""
    words = name_words(column)
    if not words:
        return 0
    if column.strip().lower() == field_name:
        return 3
    if words[-1] in SYNONYMS[field_name]:
        return 2
    return int(any(w in SYNONYMS[field_name] for w in words))


def _is_chat(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and ("role" in m or "from" in m) for m in value))


def _is_json_object(value) -> bool:
    if isinstance(value, dict):
        return True
    if not isinstance(value, str) or not value.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(value), dict)
    except json.JSONDecodeError:
        return False


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def profile(name: str, values: list) -> Column:
    """What a column holds, from its values (None and empty cells left out)."""
    vals = [v for v in values if v is not None and v != ""]
    texts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for v in vals]
    words = [len(t.split()) for t in texts]
    mid = float(median(words)) if words else 0.0
    distinct = len(set(texts))
    examples = tuple(t if len(t) <= 30 else t[:29] + "…" for t in texts[:2])
    questions = sum(t.rstrip().endswith("?") for t in texts) / len(texts) if texts else 0.0
    if not vals:
        kind = "empty"
    elif all(_is_chat(v) for v in vals):
        kind = "chat"
    elif all(_is_json_object(v) for v in vals):
        kind = "json"
    elif all(isinstance(v, list) for v in vals):
        kind = "list"
    elif distinct == len(vals) and all(re.fullmatch(r"[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*", t) for t in texts):
        kind = "id"  # unique single tokens with a digit: 1017, T-1017, a3f9 (not 0.5 or $73)
    elif all(_is_number(t) for t in texts):
        kind = "number"
    elif mid <= SHORT_WORDS and len(vals) >= 4 and distinct <= max(2, len(vals) // 2):
        kind = "label"  # a few short values, each repeated: categories, intents, classes
    elif mid <= SHORT_WORDS:
        kind = "short"
    else:
        kind = "text"
    return Column(name, kind, mid, distinct, len(vals), questions, examples)


def _fit(field_name: str, c: Column) -> float:
    return CONTENT_FIT.get(field_name, {}).get(c.kind, 0.0)


def _score(field_name: str, c: Column) -> float:
    """Name evidence plus contents evidence; 0 when the contents rule the field out."""
    by_name = name_score(field_name, c.name)
    if field_name in NAMED_ONLY:
        return float(by_name) if by_name and c.kind != "empty" else 0.0
    fit = _fit(field_name, c)
    return by_name + fit if fit else 0.0


def _why(field_name: str, c: Column) -> str:
    words = name_words(c.name)
    by_name = name_score(field_name, c.name)
    if by_name == 3:
        said = f"named {c.name!r}"
    elif by_name:
        said = f"the name has the word {next(w for w in reversed(words) if w in SYNONYMS[field_name])!r}"
    else:
        said = "no word of the name says it; by contents"
    return f"{said}; {c.describe()}"


def guess_columns(rows: Rows) -> Guess:
    """field -> column for a file's rows, each column used once, with the reason for each."""
    names: dict[str, None] = {}
    for _, row in rows:
        names.update(dict.fromkeys(row))
    columns = tuple(profile(n, [row.get(n) for _, row in rows]) for n in names)
    mapping: dict[str, str] = {}
    chat = max(columns, key=lambda c: _score("messages", c), default=None)
    if chat is not None and _score("messages", chat) > 0:
        mapping["messages"] = chat.name
    else:
        pairs = [(_score("input", a) + _score("output", b) + 0.3 * a.questions + 0.2 * (i < j), a.name, b.name)
                 for i, a in enumerate(columns) for j, b in enumerate(columns)
                 if a is not b and _score("input", a) and _score("output", b)]
        if pairs:
            _, mapping["input"], mapping["output"] = max(pairs, key=lambda p: p[0])  # first best: left to right
    for field_name in ("tags", "id", *NAMED_ONLY):
        free = [c for c in columns if c.name not in mapping.values() and _score(field_name, c)]
        if field_name == "tags":  # by contents alone only a column of labels is a tag
            free = [c for c in free if c.kind == "label" or name_score("tags", c.name)]
        if free:
            mapping[field_name] = max(free, key=lambda c: _score(field_name, c)).name
    by_name = {c.name: c for c in columns}
    reasons = {f: _why(f, by_name[col]) for f, col in mapping.items()}
    def settled(f: str, other: str) -> bool:
        """Found by a word of its name, and no column left over scores as high for it."""
        col = mapping.get(f)
        if col is None or not name_score(f, col):
            return False
        return all(_score(f, c) < _score(f, by_name[col]) for c in columns if c.name not in (col, mapping.get(other)))

    sure = "messages" in mapping or (settled("input", "output") and settled("output", "input"))
    return Guess(mapping, reasons, sure, columns)


# ------------------------------------------------------------------ how much to hold out

MIN_TRAIN_ITEMS = 20  # below this few-shot has little to choose from and LoRA little to learn from


@dataclass(frozen=True)
class Holdout:
    rows: int
    eval_items: int  # what `eval_fraction` holds out (the split is stratified by first tag, so not exactly rows x f)
    fraction: float
    enough: bool  # eval reaches the verdict's minimum and train keeps MIN_TRAIN_ITEMS
    detectable: float | None  # smallest accuracy gap between two rows these eval items detect, at best
    message: str


def _fraction_for(examples: list[Example], target: int, seed: int) -> tuple[float, int]:
    """The smallest eval_fraction (in thousandths) whose seeded split holds out at least `target` items."""
    f = math.ceil(target / len(examples) * 1000) / 1000
    while True:
        held = len(split_examples(examples, f, seed)[1])
        if held >= target or f >= 0.999:
            return f, held
        f = round(f + 0.001, 3)


def holdout(examples: list[Example], seed: int) -> Holdout:
    """Eval sized from the evidence rule: at least MIN_EVAL_ITEMS, else DEFAULT_EVAL_FRACTION of the rows."""
    n = len(examples)
    target = max(MIN_EVAL_ITEMS, math.ceil(DEFAULT_EVAL_FRACTION * n))
    enough = n - target >= MIN_TRAIN_ITEMS
    if not enough:
        target = max(1, round(DEFAULT_EVAL_FRACTION * n))
    fraction, held = _fraction_for(examples, target, seed)
    gap = detectable_difference(held)
    ten = items_needed(0.10, 0.10)
    if enough:
        message = (f"holding out {held} of {n} rows as eval (the verdict needs at least {MIN_EVAL_ITEMS}). "
                   f"{held} items tell two strategies apart when they differ by at least "
                   f"{gap * 100:.0f} accuracy points at best (McNemar, 80% power); {ten} items detect 10 points.")
    else:
        message = (f"too few rows for a verdict: {n} rows, but a verdict needs {MIN_EVAL_ITEMS} eval items and "
                   f"training rows besides (at least {MIN_TRAIN_ITEMS}); add {MIN_EVAL_ITEMS + MIN_TRAIN_ITEMS - n} "
                   f"rows or more, or name a separate `eval` file. As written ({held} eval items) a run can "
                   "only end in \"not enough evidence\".")
    return Holdout(n, held, fraction, enough, gap, message)


# ------------------------------------------------------------------ scoring that fits the answers

SENTENCE_WORDS = 8  # a reference longer than this is a sentence a model rephrases, not a fact it repeats
LABELS_MAX = 20  # at most this many distinct short answers, each repeated: a classifier's labels


def _shortest(ex: Example) -> str:
    return min(ex.references, key=lambda r: len(r.split()))


def choose_scoring(examples: list[Example]) -> tuple[str, str]:
    """(method, why) for the form of the references."""
    refs = [_shortest(ex) for ex in examples if ex.references]
    if not refs:
        return "contains", "no references to look at"
    if all(_is_json_object(r) for r in refs):
        return "json_fields", "every answer is a JSON object: each field is compared with the reference's"
    words = float(median(len(r.split()) for r in refs))
    distinct = {r.strip().lower().rstrip(".") for r in refs}
    if words <= SHORT_WORDS and len(distinct) <= min(LABELS_MAX, len(refs) // 2):
        shown = ", ".join(sorted(distinct)[:5]) + (", ..." if len(distinct) > 5 else "")
        return "exact", (f"the answers are {len(distinct)} labels ({shown}): the reply must be the label "
                         "(case and punctuation aside)")
    if words <= SHORT_WORDS:
        return "contains", (f"short answers (median {words:g} words): a reply that contains the answer counts, "
                            "whatever it adds")
    return "semantic", (f"the answers are sentences (median {words:g} words), which a reply rarely repeats word "
                        "for word, so contains would score almost nothing; semantic compares meaning with the "
                        "embedder (cosine >= scoring.semantic_threshold) and needs the same numbers")


# ------------------------------------------------------------------ checks for any task


def warnings(task: Task) -> list[str]:
    """What would make a run's minutes wasted: too few eval items for a verdict, a scoring method that
    cannot match the references' form. Said by `advisor validate` and `advisor run --dry-run`."""
    out = []
    n = len(task.eval)
    if n < MIN_EVAL_ITEMS:
        fix = ("raise eval_fraction (advisor init --from sizes it) or add rows" if task.split
               else "add eval items")
        out.append(f"eval has {n} items, the verdict needs at least {MIN_EVAL_ITEMS}: every run of this task can only "
                   f"end in \"not enough evidence\"; {fix}")
    sc, limit = task.spec.scoring, task.spec.generation.max_new_tokens
    lexical = [ex for ex in task.eval + task.eval_updated if ex.references
               and {"exact", "contains"} & set(method_names(sc.method_for(ex.tags)))]
    if not lexical:
        return out
    lengths = [len(_shortest(ex).split()) for ex in lexical]
    cannot = sum(w > limit for w in lengths)
    if cannot:
        out.append(f"{cannot} of {len(lexical)} items scored by exact/contains have references longer than "
                   f"generation.max_new_tokens ({limit}) lets a reply be (every word is at least one token): they "
                   "can never score; raise max_new_tokens, or score them with semantic or f1")
    sentences = sum(w > SENTENCE_WORDS for w in lengths)
    if sentences * 2 > len(lexical):
        out.append(f"{sentences} of {len(lexical)} items scored by exact/contains have references of more than "
                   f"{SENTENCE_WORDS} words (median {median(lengths):g}): these need the whole reference word for "
                   "word in the reply, which a model rephrasing a sentence almost never gives; use semantic "
                   "(meaning) or f1 (word overlap), or give short `answers`")
    return out
