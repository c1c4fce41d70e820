"""Does each meaning comparer tell "says the same thing" from a contradiction? Before and after the rules.

On tests/data/meaning_pairs.jsonl (pairs built from the sample tasks' references, each labelled
same/different with a class), every comparer that applies judges each pair twice:

- before: the embedding cosine and the quantities alone (the comparison as it was on main);
- after: the same plus advisor/scoring/meaning.py's rules (negation, names, contrasting words) and,
  for faithfulness, citation markers, cut-off numbers and bare answers read as such.

Comparers: `semantic` (answer against reference) and `agreement` (two answers, self-/paraphrase
consistency) on every sentence pair; `json free text` (the `reply` field of json_fields) on the
json_orders pairs; `faithfulness` (answer against one retrieved passage: "same" = every sentence
supported) on the passage pairs. Prints precision and recall of "same" per comparer, then the share
called "same" per class (for a "different" class, every one is a false accept).

    .venv/bin/python benchmarks/meaning_pairs.py
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when tests import this module
from common import ROOT, machine

from advisor.models import Embedder
from advisor.scoring import Tools, agree, normalize, quantities
from advisor.scoring.grounding import faithfulness
from advisor.scoring.semantic import semantic
from advisor.scoring.structured import field_right
from advisor.task import Example, ScoringSpec

PAIRS = ROOT / "tests" / "data" / "meaning_pairs.jsonl"
SPEC = ScoringSpec(method="semantic", free_text_fields=["reply"])  # thresholds at their defaults: 0.7 and 0.5


def load_pairs(path: Path = PAIRS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- before: the cosine and the quantities, as on main (584979e). Each comparer: (tools, a, b) -> same?
def semantic_before(tools: Tools, answer: str, reference: str) -> bool:
    return (tools.similarity.cosine(answer, reference) >= SPEC.semantic_threshold
            and quantities(reference) <= quantities(answer))


def same_meaning_before(tools: Tools, a: str, b: str) -> bool:
    return normalize(a) == normalize(b) or (quantities(a) == quantities(b)
                                            and tools.similarity.cosine(a, b) >= SPEC.semantic_threshold)


def faithful_before(tools: Tools, answer: str, passage: str) -> bool:
    said = [s.strip() for s in re.split(r"(?<=[.!?])\s+", answer) if re.search(r"\w", s)]
    return all(tools.similarity.cosine(s, passage) >= SPEC.faithfulness_threshold
               and quantities(s) <= quantities(passage) for s in said)


# ---- after: the advisor's comparers as they are
def semantic_after(tools: Tools, answer: str, reference: str) -> bool:
    return semantic(answer, Example(id="p", input="", output=reference), SPEC, tools.similarity).value == 1.0


def agreement_after(tools: Tools, a: str, b: str) -> bool:
    return agree(a, b, Example(id="p", input="", output=b), ScoringSpec(method="contains"), tools)


def json_text_after(tools: Tools, a: str, b: str) -> bool:
    return field_right("reply", a, b, SPEC, tools.similarity)


def faithful_after(tools: Tools, answer: str, passage: str) -> bool:
    return faithfulness(answer, [passage], SPEC, tools.similarity) == 1.0


COMPARERS = {  # name -> (which pairs, before, after)
    "semantic": (lambda p: p["kind"] == "sentence", semantic_before, semantic_after),
    "json free text": (lambda p: p["kind"] == "sentence" and p["task"] == "json_orders", same_meaning_before,
                       json_text_after),
    "agreement": (lambda p: p["kind"] == "sentence", same_meaning_before, agreement_after),
    "faithfulness": (lambda p: p["kind"] == "passage", faithful_before, faithful_after),
}


def judge_all(tools: Tools, pairs: list[dict]) -> dict[str, list[tuple[dict, bool, bool]]]:
    """comparer -> [(pair, said same before, said same after)] over the pairs it applies to."""
    tools.similarity.vectors([t for p in pairs for t in (p["a"], p["b"])])  # the set in one encode call
    return {name: [(p, before(tools, p["a"], p["b"]), after(tools, p["a"], p["b"])) for p in pairs if applies(p)]
            for name, (applies, before, after) in COMPARERS.items()}


def precision_recall(judged: list[tuple[dict, bool]]) -> tuple[float, float]:
    """Of "same": precision (share of the pairs called same that are) and recall (share of same pairs called so)."""
    called = [same for p, same in judged if same]
    tp = sum(1 for p, same in judged if same and p["label"] == "same")
    actual = sum(1 for p, _ in judged if p["label"] == "same")
    return (tp / len(called) if called else float("nan")), (tp / actual if actual else float("nan"))


def table(results: dict[str, list[tuple[dict, bool, bool]]]) -> str:
    lines = ["| comparer | pairs (same/different) | precision before | recall before | precision after "
             "| recall after |", "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        pb, rb = precision_recall([(p, b) for p, b, _ in rows])
        pa, ra = precision_recall([(p, a) for p, _, a in rows])
        same = sum(p["label"] == "same" for p, _, _ in rows)
        lines.append(f"| {name} | {len(rows)} ({same}/{len(rows) - same}) | {pb:.2f} | {rb:.2f} | {pa:.2f} "
                     f"| {ra:.2f} |")
    return "\n".join(lines)


def class_table(results: dict[str, list[tuple[dict, bool, bool]]]) -> str:
    classes = list(dict.fromkeys(p["class"] for rows in results.values() for p, _, _ in rows))
    lines = ["| class (label) | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for c in classes:
        cells = []
        for rows in results.values():
            mine = [(b, a) for p, b, a in rows if p["class"] == c]
            cells.append(f"{sum(b for b, _ in mine)} → {sum(a for _, a in mine)} of {len(mine)}" if mine else "")
        label = next(p["label"] for rows in results.values() for p, _, _ in rows if p["class"] == c)
        lines.append(f"| {c} ({label}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    print(machine())
    embedder = Embedder()
    results = judge_all(Tools(lambda: embedder), load_pairs())
    print(f"\n{PAIRS.relative_to(ROOT)}: precision and recall of 'same', before (cosine + quantities) and after "
          "(+ negation, names, contrast; faithfulness: + markers, cut-off numbers, bare answers)\n")
    print(table(results))
    print("\nPairs called 'same', before → after, per class (for a 'different' class each is a false accept)\n")
    print(class_table(results))
    print("\nDifferent pairs still called 'same' after:")
    for name, rows in results.items():
        for p, _, after in rows:
            if after and p["label"] == "different":
                print(f"  {name}: {p['id']} [{p['class']}] {p['a']!r} vs {p['b'][:80]!r}")


if __name__ == "__main__":
    main()
