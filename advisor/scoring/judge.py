"""An LLM judge: a rubric from the task, any generator the task names, a fixed verdict format.

The judge reads the question, the reference answer(s), the rubric and the reply, and
answers in two lines, `VERDICT: correct` or `VERDICT: wrong`, then `REASON: ...`. It
runs at temperature 0 through the generator's own generation cache, so a rerun pays
nothing and gets the same verdicts. A reply that does not follow the verdict format is
kept as written and counts as wrong.

A judge is only as good as its agreement with people. Eval rows may carry answers a
person scored (`human_scores`); the judge scores them too, and Cohen's kappa with a
95% interval (`kappa_interval`) says how well it agrees. The judge counts toward accuracy and
the verdict only when at least `min_calibration_items` answers were compared and the
interval's lower end reaches `min_kappa`; otherwise it is an *uncalibrated judge* and
its numbers are shown as that, beside the scores that do count.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

from advisor.task import Example, JudgeSpec

SYSTEM = ("You grade a reply against a rubric and a reference answer. Answer in exactly two lines:\n"
          "VERDICT: correct   (or: VERDICT: wrong)\n"
          "REASON: one short sentence saying why.")
_VERDICT = re.compile(r"VERDICT\s*:\s*\**\s*(correct|wrong)\b", re.IGNORECASE)
_REASON = re.compile(r"REASON\s*:\s*(.+)", re.IGNORECASE | re.DOTALL)
N_RESAMPLES = 2000


def judge_messages(rubric: str, ex: Example, answer: str) -> list[dict[str, str]]:
    refs = "\n".join(f"- {r}" for r in ex.references) or "- (none given)"
    user = (f"Rubric: {rubric}\n\nQuestion: {ex.input}\n\nReference answer:\n{refs}\n\n"
            f"Reply to grade: {answer}\n\nIs the reply correct under the rubric?")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: the judge's reply did not follow the verdict format (scored as wrong)
    reason: str
    prompt: str  # the judge's prompt as sent (system, then user)
    reply: str  # the judge's reply as written

    def as_dict(self) -> dict:
        return {"correct": self.correct, "reason": self.reason, "prompt": self.prompt, "reply": self.reply}


def parse_verdict(reply: str) -> tuple[bool | None, str]:
    m = _VERDICT.search(reply)
    reason = _REASON.search(reply)
    return (None if m is None else m.group(1).lower() == "correct",
            reason.group(1).strip() if reason else reply.strip())


@dataclass(frozen=True)
class Calibration:
    """The judge against people on the same answers: Cohen's kappa (95% interval, `kappa_interval`) and raw
    agreement."""

    n: int
    kappa: float  # NaN when undefined (fewer than two items, or one side gives a single label)
    low: float
    high: float
    agreement: float
    unparsed: int  # judge replies without a verdict line (scored as wrong)
    min_kappa: float
    min_items: int

    @property
    def calibrated(self) -> bool:
        return self.n >= self.min_items and bool(np.isfinite(self.low)) and self.low >= self.min_kappa

    def as_dict(self) -> dict:
        return {"n": self.n, "kappa": self.kappa, "low": self.low, "high": self.high, "agreement": self.agreement,
                "unparsed": self.unparsed, "min_kappa": self.min_kappa, "min_items": self.min_items,
                "calibrated": self.calibrated}


def kappa_interval(human: list[int], judge: list[int], seed: int) -> tuple[float, float, float]:
    """Cohen's kappa and a 95% interval: the wider of a percentile bootstrap over the paired items and the
    Wilson interval of the observed agreement mapped to kappa (undefined resamples skipped).

    The bootstrap alone collapses to [1, 1] at perfect agreement: no resample can disagree where the sample
    never did, so 10 agreeing items would look as certain as 10,000. The Wilson interval of the agreement
    p_o (k of n items) does not: at 10 of 10 its lower end is 0.72. Mapped through kappa = (p_o - p_e) /
    (1 - p_e) at the observed chance agreement p_e, it bounds kappa from the agreement's uncertainty; the
    bootstrap adds the marginals' (p_e's). Taking the union of the two is conservative: never narrower than
    either."""
    # Here, not at the top: sklearn costs 1-2 s per process, and most runs have no judge.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    from advisor.stats import wilson

    h, j = np.asarray(human), np.asarray(judge)
    if len(h) < 2:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # resamples where both sides give one label have no kappa: NaN, skipped
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(cohen_kappa_score(h, j, labels=[0, 1], replace_undefined_by=np.nan))
        draws = []
        for _ in range(N_RESAMPLES):
            i = rng.integers(0, len(h), len(h))
            draws.append(cohen_kappa_score(h[i], j[i], labels=[0, 1], replace_undefined_by=np.nan))
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(kappa) or len(draws) == 0:
        return kappa, float("nan"), float("nan")
    chance = float(h.mean() * j.mean() + (1 - h.mean()) * (1 - j.mean()))
    p_low, p_high = wilson(int((h == j).sum()), len(h))
    low = max(-1.0, (p_low - chance) / (1 - chance))
    high = min(1.0, (p_high - chance) / (1 - chance))
    return kappa, min(low, float(np.percentile(draws, 2.5))), max(high, float(np.percentile(draws, 97.5)))


class Judge:
    """Verdicts from one generator (local model or endpoint), batched, cached, and remembered per run."""

    def __init__(self, generator, spec: JudgeSpec, name: str, batch_size: int = 8, seed: int = 0,
                 batch_tokens: int | None = None):
        self.generator, self.spec, self.name = generator, spec, name
        self.batch_size, self.batch_tokens, self.seed = batch_size, batch_tokens, seed
        self._memo: dict[tuple[Example, str], Verdict] = {}
        self.calibration: Calibration | None = None

    @property
    def counts(self) -> bool:
        """Whether the judge's verdicts count toward accuracy and the recommendation."""
        return self.calibration is not None and self.calibration.calibrated

    def verdicts(self, pairs: list[tuple[Example, str]]) -> list[Verdict]:
        """Verdicts on (eval item, reply) pairs; the ones not yet judged in this run go in one batched call."""
        todo = list(dict.fromkeys(p for p in pairs if p not in self._memo))
        if todo:
            asks = [judge_messages(self.spec.rubric, ex, a) for ex, a in todo]
            replies = self.generator.complete(asks, max_new_tokens=self.spec.max_new_tokens,
                                              batch_size=self.batch_size, batch_tokens=self.batch_tokens,
                                              temperature=0.0, seed=self.seed)
            for pair, msgs, g in zip(todo, asks, replies):
                correct, reason = parse_verdict(g.text)
                prompt = "\n\n".join(m["content"] for m in msgs)
                self._memo[pair] = Verdict(correct, reason, prompt, g.text)
        return [self._memo[p] for p in pairs]

    def calibrate(self, examples: list[Example]) -> Calibration:
        """Judge every human-scored answer of these items and measure agreement with the people."""
        pairs = [(ex, answer) for ex in examples for answer, _ in ex.human_scores]
        human = [int(s >= 0.5) for ex in examples for _, s in ex.human_scores]
        found = self.verdicts(pairs)
        judged = [int(bool(v.correct)) for v in found]
        kappa, low, high = kappa_interval(human, judged, self.seed)
        agreement = float(np.mean([h == j for h, j in zip(human, judged)])) if human else float("nan")
        self.calibration = Calibration(len(human), kappa, low, high, agreement,
                                       sum(v.correct is None for v in found), self.spec.min_kappa,
                                       self.spec.min_calibration_items)
        return self.calibration
