"""Do two texts say the same thing? The one rule every meaning comparer uses.

Sentence embeddings compare topic, not truth: MiniLM puts "I cannot offer free devices" and
"Yes, I can offer you a free device" at cosine 0.90, "The capital of Denmark is Copenhagen."
and "...is Oslo." at 0.87. So a pair whose cosine passes the threshold must also agree on
the facts a cosine cannot see, each checked by a plain rule:

- quantities: the numbers with their currency, percent sign or unit ("18 months" is not "18 days");
- negation: one text denies what the other states ("cannot offer" against "can offer");
- names: each text names someone or something the other does not (Copenhagen against Oslo);
- contrast: each uses a different word of a set of mutually exclusive words (open/closed,
  lower/raise, oink/moo, Monday/Friday, red/blue).

The rules are deliberately narrow: they refuse a pair only on evidence of a contradiction, so
paraphrases pass (tests/data/meaning_pairs.jsonl measures both; benchmarks/meaning_pairs.py
prints the table in the README). What no rule catches (an instruction that sends the user
to the wrong place in other words) is for a calibrated judge or a person.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from advisor.scoring.lexical import UNITS, normalize, quantities

# How the quantities of `said` must relate to those of `other`: the same ("same"), all of other's stated
# ("states": an answer against its reference), all of said's found in other ("supported": a sentence against a
# retrieved passage, which says more).
Direction = Literal["same", "states", "supported"]
RULES = ("quantities", "negation", "names", "contrast")

# Retrieval prompts number their passages "[1] (source: doc.md > Section)"; a reply that pastes a passage keeps
# the markers, which are neither quantities nor names. Markdown heading marks go too.
_MARKERS = re.compile(r"\[\d+\]|\(source:[^)\n]*\)?|^#{1,6}\s|(?<=\s)#{1,6}\s", re.M)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_CLAUSE_END = re.compile(r"[,.;:!?()\[\]\n]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+|\n\s*)([A-Z][\w'’-]*)")

STOPWORDS = frozenset(
    "a an the i you we they he she it my your our their its to of for in at by with and or but if so is are was "
    "were be been am do does did can could will would should may might must have has had this that these those "
    "there here as from up about into than then just only also any some all very too please me us them him her "
    "what which who how when where why yes ok okay get gets got one".split())

# Words that deny what follows them. "n't" endings are cues too. Phrases that contain one but deny nothing
# ("no problem", "not only") are left out before counting.
NEGATIONS = frozenset("not no never cannot cant dont doesnt didnt isnt arent wasnt werent without none nobody "
                      "nothing nowhere neither nor unless".split())
NOT_DENIALS = re.compile(r"\b(?:no (?:problem|problems|worries|rush|doubt|matter)|not only|no (?:later|more|less|"
                         r"longer|sooner) than)\b")
_SCOPE = 4  # content words a negation reaches, within its clause
VERBS = frozenset("is are was were be been am have has had do does did can could will would should may might "
                  "must".split())  # a new predicate ends a negation's reach
# Words a bare answer wraps its quantity in ("The answer is: about 3 business days").
FILLER = frozenset("answer about around approximately roughly exactly business".split())

# Sets of mutually exclusive words; each alternative lists its inflected forms. A pair is refused when each text
# uses an alternative of a set that the other does not use at all.
CONTRASTS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(alt.split()) for alt in group.split("|")) for group in (
        "open opens opened opening|close closes closed closing shut shuts",
        "lower lowers lowered lowering decrease decreases decreased reduce reduces reduced|"
        "raise raises raised raising higher increase increases increased",
        "low|high", "hot|cold", "warmer warm|cooler", "before|after", "over above|under below", "free|paid", "on|off",
        "accept accepts accepted allow allows allowed|reject rejects rejected refuse refuses refused forbid",
        "include includes included|exclude excludes excluded", "add adds added|remove removes removed delete deletes",
        "enable enables enabled|disable disables disabled", "start starts started begin begins|stop stops stopped",
        "push pushes|pull pulls", "hard|soft", "light|dark", "rich|poor", "early|late", "fast|slow",
        "full|empty", "inside|outside", "indoor indoors|outdoor outdoors", "left|right",
        "maximum max|minimum min", "true|false", "same|different", "possible|impossible",
        "available|unavailable", "online|offline", "valid|invalid", "win wins won|lose loses lost",
        "buy buys bought|sell sells sold", "day|night", "weekday weekdays|weekend weekends",
        "red|orange|yellow|green|blue|purple|pink|brown|black|white|grey gray",
        "oink oinks|moo moos|quack quacks|woof|bark barks|meow meows|baa|neigh neighs|cluck clucks|roar roars",
        "monday mondays|tuesday tuesdays|wednesday wednesdays|thursday thursdays|friday fridays|"
        "saturday saturdays|sunday sundays",
        "january|february|march|april|june|july|august|september|october|november|december",
        "spring|summer|autumn|winter", "north northern|south southern|east eastern|west western",
    ))


@dataclass(frozen=True)
class Contradiction:
    """Why a pair whose cosine passed was refused: the rule, and the words, names or quantities that differ."""

    rule: str
    differ: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "differ": list(self.differ)}


def strip_markers(text: str) -> str:
    """The text without passage citations ("[1]", "(source: ...)") and Markdown heading marks."""
    return " ".join(_MARKERS.sub(" ", text).split())


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    word = word[:-2] if word.endswith("'s") else word
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@dataclass(frozen=True)
class Polarity:
    """What a text denies and states, word by word (stems), and whether it denies overall."""

    odd: bool              # an odd number of negations: the text denies something overall
    denied: frozenset      # content words inside a negation's reach
    stated: frozenset      # content words outside any


def _is_negation(token: str) -> bool:
    t = token.lower().replace("’", "'")
    return t in NEGATIONS or t.endswith("n't")


def polarity(text: str) -> Polarity:
    """Negations and what they reach: up to four content words after each, within its clause, ending at
    a verb like "is" or "have" once a word was reached ("without the box | have a fee"). A sentence's
    answer word "No," before another negation of the same sentence ("No, we don't...") counts once. A
    clause with two negations ("can't return it without the box") is left out: its words' polarity is
    beyond a word rule, and a rule refuses only on evidence."""
    text = NOT_DENIALS.sub(" ", text.lower())
    count, denied, stated = 0, set(), set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        tokens = re.findall(r"[a-z][a-z'’-]*|[,.;:!?()\[\]\n]", sentence)
        if tokens[:1] == ["no"] and len(tokens) > 1 and _CLAUSE_END.fullmatch(tokens[1]) and \
                any(_is_negation(t) for t in tokens[2:]):
            tokens = tokens[2:]
        clause: list[str] = []
        for t in tokens + ["."]:
            if not _CLAUSE_END.fullmatch(t):
                clause.append(t)
                continue
            cues = sum(map(_is_negation, clause))
            if cues and cues % 2 == 0:
                clause = []
                continue
            count += cues
            reach, reached = 0, False
            for w in clause:
                if _is_negation(w):
                    reach, reached = _SCOPE, False
                elif w in STOPWORDS:
                    if w in VERBS and reached:
                        reach = 0
                else:
                    (denied if reach else stated).add(_stem(w))
                    reached, reach = reached or reach > 0, max(reach - 1, 0)
            clause = []
    return Polarity(count % 2 == 1, frozenset(denied), frozenset(stated))


def _denied_stated(a: Polarity, b: Polarity) -> set[str]:
    """Words a denies and b states, that a does not also state nor b also deny."""
    return {w for w in a.denied if w in b.stated and w not in a.stated and w not in b.denied}


def _inner_names(text: str) -> set[str]:
    """Capitalised words not at a sentence's start ("Oslo" in "...is Oslo.")."""
    starts = {m.start(1) for m in _SENTENCE_START.finditer(text)}
    return {m.group() for m in _WORD.finditer(text) if m.group()[0].isupper() and m.start() not in starts
            and m.group() != "I" and m.group().lower() not in STOPWORDS}


def names(text: str, known: set[str] = frozenset()) -> set[str]:
    """Proper names, by a light rule: capitalised words not at a sentence's start, and a capitalised first
    word when it is `known` as a name (capitalised inside a sentence of either text compared)."""
    return _inner_names(text) | {w for w in _WORD.findall(text) if w in known}


def _swapped_names(a: str, b: str) -> tuple[str, ...]:
    """The names each text has that the other does not mention at all (in any case), when both have some."""
    known = _inner_names(a) | _inner_names(b)
    words_a, words_b = {w.lower() for w in _WORD.findall(a)}, {w.lower() for w in _WORD.findall(b)}
    only_a = sorted(n for n in names(a, known) if n.lower() not in words_b)
    only_b = sorted(n for n in names(b, known) if n.lower() not in words_a)
    return tuple(only_a + only_b) if only_a and only_b else ()


def _contrast(a: Polarity, b: Polarity) -> tuple[str, ...]:
    for group in CONTRASTS:
        used_a = {i for i, alt in enumerate(group) if alt & a.stated}
        used_b = {i for i, alt in enumerate(group) if alt & b.stated}
        if used_a - used_b and used_b - used_a:
            return tuple(sorted(w for i in used_a ^ used_b for w in group[i] & (a.stated | b.stated)))
    return ()


def _denies_the_alternative(a: Polarity, b: Polarity) -> bool:
    """a denies one word of a contrast set and b states another: "not open" against "closed" agree."""
    return any(alt & a.denied and any(other & b.stated for other in group if other is not alt)
               for group in CONTRASTS for alt in group)


def _quantities_differ(said: str, other: str, direction: Direction) -> tuple[str, ...]:
    qs, qo = quantities(said), quantities(other)
    if direction == "states":
        return tuple(sorted(qo - qs))
    if direction == "supported":
        return tuple(sorted(qs - qo))
    return tuple(sorted(qs ^ qo))


def contradiction(said: str, other: str, direction: Direction = "same",
                  rules: tuple[str, ...] = RULES) -> Contradiction | None:
    """The first rule under which `said` and `other` disagree, or None: the facts a cosine cannot see agree.

    `rules` chooses which rules apply (("quantities",) is the comparison as it was before the others)."""
    said, other = strip_markers(said), strip_markers(other)
    if "quantities" in rules and (q := _quantities_differ(said, other, direction)):
        return Contradiction("quantities", q)
    pa, pb = polarity(said), polarity(other)
    flips = _contrast(pa, pb)
    explained = flips or _denies_the_alternative(pa, pb) or _denies_the_alternative(pb, pa)
    if "negation" in rules and pa.odd != pb.odd and not explained:  # "not closed" is "open"
        if hit := _denied_stated(pa, pb) | _denied_stated(pb, pa):
            return Contradiction("negation", tuple(sorted(hit)))
    if "names" in rules and (n := _swapped_names(said, other)):
        return Contradiction("names", n)
    if "contrast" in rules and flips and pa.odd == pb.odd:
        return Contradiction("contrast", flips)
    return None


def terse(text: str) -> bool:
    """A bare answer: quantities and nothing else that carries meaning ("The answer is: 3 days", "$149.").
    An embedding has nothing to compare in it; its quantities are what it says."""
    words = normalize(strip_markers(text)).split()
    rest = [w for w in words if not any(c.isdigit() for c in w) and w not in STOPWORDS and w not in FILLER
            and _stem(w) not in UNITS]
    return bool(quantities(text)) and not rest


def quantities_decide(said: str, other: str) -> bool:
    """One text is a bare answer and both state quantities: the quantity rule, not the cosine, decides."""
    return (terse(said) or terse(other)) and bool(quantities(said)) and bool(quantities(other))
