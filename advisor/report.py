"""Render a run's Results: terminal (rich), Markdown, and one self-contained HTML file.

The report only renders what results.json holds; `advisor report DIR` re-renders it.
A value the run does not have (None, NaN) shows as "–".

Both files carry the same facts, built once by `context()`:
verdict, comparison table, charts, evidence (disagreements, retrieval), experiments,
paired comparisons, reasons, assumptions and reproducibility.

Escaping: everything from data or a model is escaped. HTML uses jinja2 autoescape
(nothing from data is ever marked safe); Markdown passes every data string through
`md_text`/`md_cell`, which turn `<`, `>`, `&` into entities and backslash-escape
Markdown punctuation, so an answer can neither become HTML nor a link or image.
Charts come from advisor.charts: base64 data: URIs in HTML, PNG files beside report.md.
"""
from __future__ import annotations

import base64
import math
import re
import warnings
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from advisor.cache import atomic_write_bytes, atomic_write_text
from advisor.charts import Chart, charts as render_charts, estimate, num
from advisor.formatting import count, money, pct, points_worth
from advisor.kinds import PricingKind
from advisor.results import Assumptions, Estimate, Pricing, Results

DASH = "–"
CHART_DIR = "charts"
MAX_DISAGREEMENTS = 12
MAX_RETRIEVAL_SAMPLES = 5


# ---------------------------------------------------------------- formatting


def fmt_pct(e: Estimate | tuple | float | None, ci: bool = True) -> str:
    est = e if isinstance(e, tuple) else estimate(e)
    if est is None:
        return DASH
    mean, low, high = est
    if not ci or low is None or high is None:
        return f"{100 * mean:.0f}%"
    return f"{100 * mean:.0f}% ({100 * low:.0f}–{100 * high:.0f})"


def fmt_money(x: float | None) -> str:
    x = num(x)
    return DASH if x is None else money(x)


def fmt_num(x: float | None, digits: int = 0, unit: str = "") -> str:
    x = num(x)
    return DASH if x is None else f"{x:,.{digits}f}{unit}"


def fmt_value(x: Any) -> str:
    """Any scalar from results.json, for the assumptions table."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.6g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt_value(v) for v in x) or DASH
    if isinstance(x, dict):
        return ", ".join(f"{k}: {fmt_value(v)}" for k, v in x.items()) or DASH
    return str(x)


def _per_1k(x: Any) -> float | None:
    x = num(x)
    return None if x is None else 1000 * x


def _roi(x: Any) -> str:
    x = num(x)
    return DASH if x is None else f"{x:.1f}x"


# ---------------------------------------------------------------- content


def _cite(results: Results, sources: tuple[str, ...] | list[str]) -> str:
    """Retrieved document ids as citations: the title, date and URL a document carries, else its id."""
    out = []
    for source in sources:
        m = results.task.document_meta.get(source)
        extra = ", ".join(v for v in ((m.updated, m.url) if m else ()) if v)
        name = f"{m.title} ({source})" if m and m.title else source
        out.append(f"{name} [{extra}]" if extra else name)
    return "; ".join(out) or DASH


def fmt_pricing(p: Pricing, a: Assumptions) -> str:
    """The price assumption behind a row's cost per request (advisor.economics.pricing), in words."""

    def tokens(inp: float | None, out: float | None) -> str:
        inp, out = num(inp), num(out)
        return DASH if inp is None or out is None else f"${inp:,.4g} in / ${out:,.4g} out per M tokens"

    if p.kind == PricingKind.SELF_HOSTED:
        hour, secs = num(p.hardware_price_per_hour), num(p.seconds_per_request)
        if hour is None or secs is None:
            return "self-hosted"
        return f"self-hosted: ${hour:,.4g}/hour × {secs:,.3g} s per request (measured, batched)"
    if p.kind in (PricingKind.HOSTED, PricingKind.MODEL_TOKEN_PRICES):
        return f"{p.kind}: {tokens(p.input_price_per_mtok, p.output_price_per_mtok)}"
    return f"task token prices: {tokens(a.input_price_per_mtok, a.output_price_per_mtok)}"


def table_rows(results: Results) -> list[dict[str, str]]:
    """One dict of display strings per strategy: the same facts in every format."""
    rows = []
    for s in results.strategies:
        e = s.economics
        rows.append({
            "Strategy": s.name or DASH,
            "Accuracy (95%\u00a0CI)": fmt_pct(s.accuracy),
            # pairs share a column (a / b), so the table fits a 1280 px window; no-break spaces keep a header's
            # "a / b" on one line when it wraps
            "Agreement self\u00a0/\u00a0para.": f"{fmt_pct(s.consistency.self_agreement, ci=False)} / "
                                      f"{fmt_pct(s.consistency.paraphrase_agreement, ci=False)}",
            "Format": fmt_pct(s.format_adherence, ci=False),
            "Tokens in\u00a0/\u00a0out": f"{fmt_num(s.tokens.prompt_mean)} / {fmt_num(s.tokens.completion_mean)}",
            "$ / 1k req": fmt_money(_per_1k(e.cost_per_request)),
            "Latency (s) p50\u00a0/\u00a0p95": f"{fmt_num(s.latency.p50_seconds, 2)} / {fmt_num(s.latency.p95_seconds, 2)}",
            "Set-up": fmt_money(e.setup_cost),
            "Total (horizon)": fmt_money(e.total_cost),
            "Payback": _payback(s.name, e.payback_days, results.economics.baseline),
            "ROI": _roi(e.roi),
        })
    return rows


def _payback(name: str, days: float | None, baseline: str) -> str:
    """Day the row's savings against the baseline repay its extra set-up and running costs."""
    if name == baseline:
        return "baseline"
    d = num(days)
    return "never" if d is None else ("at once" if d == 0 else f"day {count(math.ceil(d))}")


def models_legend(results: Results) -> list[dict[str, str]]:
    """Which model each row ran on and how it is priced, once per distinct pair (a legend under the table,
    instead of the same long text in every row)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in results.strategies:
        groups.setdefault((_text(s.model), fmt_pricing(s.pricing, results.assumptions)), []).append(s.name)
    return [{"rows": ", ".join(names), "model": model, "pricing": pricing}
            for (model, pricing), names in groups.items()]


def _correct_label(score: Any) -> tuple[str, str]:
    """(label, css class) for one answer's score in [0, 1]."""
    s = num(score)
    if s is None:
        return DASH, "muted"
    if s >= 1:
        return "✓ correct", "ok"
    if s <= 0:
        return "✗ wrong", "bad"
    return f"◐ partial ({s:.2f})", "part"


def _text(x: Any) -> str:
    if x is None:
        return DASH
    if isinstance(x, (list, tuple)):
        return " | ".join(str(v) for v in x) or DASH
    return str(x)


# What each scoring method measures, in words (advisor/scoring); an `all of` scores its weakest part.
METHOD_WORDS = {
    "exact": "the answer equals a reference (normalised words; numbers keep $, % and units)",
    "contains": "the answer contains a reference (normalised words; numbers keep $, % and units)",
    "f1": "word overlap (token F1) with the closest reference",
    "choice": "the option the answer picks is the right one",
    "regex": "the answer contains a match of the task's pattern",
    "format": "the answer has the required form (not whether its content is right)",
    "json_fields": "the share of the reference JSON's fields the reply gets right (exactly; free-text fields by "
                   "meaning, as semantic)",
    "semantic": "what the reply says is as close to a reference as the threshold (embedding cosine), states its "
                "quantities, and neither negates it, swaps a name nor uses an exclusive alternative (open/closed); "
                "an instruction that points elsewhere in other words still passes: a calibrated judge or "
                "`advisor review` catches it",
    "judge": "an LLM judge's verdict under the task's rubric",
}
UNCALIBRATED = "uncalibrated judge"


def _parts(method: str) -> list[str]:
    """The methods in a method's description (`all of: format, json_fields` -> both)."""
    return method.removeprefix("all of: ").split(", ") if method.startswith("all of: ") else [method]


def _method_words(method: str) -> str:
    parts = _parts(method)
    if len(parts) == 1:
        return METHOD_WORDS.get(method, "a plug-in scorer")
    said = "; ".join(f"{p}: {METHOD_WORDS.get(p, 'a plug-in scorer')}" for p in parts)
    return f"all of ({said}); an answer scores its weakest part"


def _judge_counts(results: Results) -> bool:
    return results.judge is not None and results.judge.calibrated


def item_detail(results: Results, a) -> str:
    """What the substance scorers saw for one answer, in words (empty when only lexical or format scoring ran)."""
    sc = a.scoring
    if sc is None:
        return ""
    out = []
    if sc.fields is not None:
        wrong = [k for k, ok in sc.fields.items() if not ok]
        out.append(("fields wrong: " + ", ".join(wrong)) if wrong else "every field right")
        if sc.parsed is False:
            out.append("no JSON object found")
    if sc.similarity is not None:
        out.append(f"similarity {sc.similarity:.2f}")
    if sc.missing_quantities:
        out.append("missing " + ", ".join(sc.missing_quantities))
    for c in sc.contradictions or ():  # close in meaning, refused by a rule (advisor/scoring/meaning.py)
        where = f' in "{c.sentence}"' if c.sentence else ""
        out.append(f"{c.comparer} refused: {c.rule} ({', '.join(c.differ)}){where}")
    if sc.judge is not None:
        said = {True: "correct", False: "wrong", None: "no verdict"}[sc.judge.correct]
        label = "judge" if _judge_counts(results) else UNCALIBRATED
        out.append(f"{label}: {said} ({sc.judge.reason})")
    if sc.context_recall is not None:
        out.append("gold source retrieved" if sc.context_recall else "gold source not retrieved")
    if sc.faithfulness is not None:
        out.append(f"faithfulness {sc.faithfulness:.2f}")
    return "; ".join(out)


def measures(results: Results) -> dict:
    """What each number measures: per tag its scoring method and each row's accuracy; per field for JSON
    replies; the judge's calibration; grounding beside accuracy for retrieval rows."""
    names = [s.name for s in results.strategies]
    methods: dict[str, set[str]] = {}
    for ex in results.examples:
        for tag in ex.tags or ("(untagged)",):
            if ex.method:
                methods.setdefault(tag, set()).add(ex.method)
    judged = ("" if results.judge is None or results.judge.calibrated
              else f" (the judge's part not counted: {UNCALIBRATED})")
    tags = [{"tag": t, "method": "; ".join(m + (judged if "judge" in _parts(m) else "")
                                           for m in sorted(methods.get(t, ()))) or DASH,
             "cells": [fmt_pct(s.by_tag.get(t)) for s in results.strategies]} for t in results.task.tags]
    used = sorted({m for ms in methods.values() for m in ms})
    field_names = list(dict.fromkeys(f for s in results.strategies for f in (s.fields or {})))
    fields = None if not field_names else {
        "names": field_names,
        "rows": [{"strategy": s.name, "cells": [fmt_pct((s.fields or {}).get(f), ci=False) for f in field_names]}
                 for s in results.strategies]}
    judge = None
    if results.judge is not None:
        j = results.judge
        kappa = DASH if num(j.kappa) is None else f"{j.kappa:.2f}"
        interval = "" if num(j.low) is None or num(j.high) is None else f" ({j.low:.2f} to {j.high:.2f})"
        status = ("Calibrated: its verdicts count" if j.calibrated else
                  f"{UNCALIBRATED.capitalize()}: its verdicts are shown but not counted in accuracy or the verdict")
        judge = {"line": f"Judge {j.generator}: Cohen's kappa {kappa}{interval} against people on {j.n} "
                         f"human-scored answers (raw agreement {fmt_pct(j.agreement, ci=False)}, {j.unparsed} replies "
                         f"without a verdict); it counts when n >= {j.min_items} and the interval's lower end "
                         f">= {j.min_kappa:g}. {status}.",
                 "calibrated": j.calibrated, "rubric": j.rubric,
                 "rows": [{"strategy": s.name, "value": fmt_pct(s.judge.accuracy) +
                           ("" if s.judge.counts else f" ({UNCALIBRATED})")}
                          for s in results.strategies if s.judge is not None]}
    grounding = [{"strategy": s.name, "accuracy": fmt_pct(s.accuracy),
                  "recall": fmt_pct(s.grounding.context_recall, ci=False),
                  "faithfulness": fmt_pct(s.grounding.faithfulness, ci=False),
                  "threshold": f"{s.grounding.threshold:g}",
                  "unsupported": ", ".join(s.grounding.right_unsupported) or DASH}
                 for s in results.strategies if s.grounding is not None]
    return {"strategies": names, "tags": tags, "methods": [{"method": m, "what": _method_words(m)} for m in used],
            "fields": fields, "judge": judge, "grounding": grounding}


def review(results: Results) -> dict | None:
    """People's labels (advisor review): how many items, how the verdict moved, each automatic method's agreement
    with the people, and the prediction-powered accuracy when they labelled a random sample; None without labels."""
    r = results.review
    if r is None:
        return None
    rec = results.recommendation

    def said(strategy: str, status: str) -> str:
        return strategy if status == "recommended" else f"not enough evidence (leading: {strategy})"

    before, after = said(r.before.strategy, r.before.status), said(rec.strategy, rec.status)
    moved = (f"the verdict is unchanged: {after}" if before == after else
             f"the verdict moved: before the labels: {before}; with them: {after}")
    line = (f"People reviewed {count(r.items)} eval item{'s' if r.items != 1 else ''} ({count(r.answers)} answers "
            f"labelled; the labels changed {count(r.changed)} score{'s' if r.changed != 1 else ''}): {moved}. "
            "A label replaces its answer's automatic score.")

    def kappa(m) -> str:
        if num(m.kappa) is None:
            return "kappa undefined (one side gives one label)"
        return f"kappa {m.kappa:.2f} ({m.low:.2f} to {m.high:.2f})"

    agreement = [f"{m.method}: {kappa(m)}, {fmt_pct(m.agreement, ci=False)} agree on {count(m.n)}"
                 for m in r.agreement]
    ppi = [f"{name} {fmt_pct(e)} ({count(e.n)} sampled answers)" for name, e in (r.ppi or {}).items()]
    return {"line": line, "agreement": "; ".join(agreement), "ppi": "; ".join(ppi)}


def disagreements(results: Results) -> tuple[list[dict], int]:
    """Eval items where the strategies' scores differ, side by side; (shown, how many in all)."""
    items = []
    for ex in results.examples:
        scores = {num(a.score) for a in ex.answers.values()}
        if len(scores) < 2:
            continue
        rows = []
        for name, a in ex.answers.items():
            label, css = _correct_label(a.score)
            rows.append({"strategy": name, "text": _text(a.text), "verdict": label, "css": css,
                         "format": DASH if a.format_ok is None else ("yes" if a.format_ok else "no"),
                         "sources": _cite(results, a.sources), "detail": item_detail(results, a) or DASH})
        items.append({"id": _text(ex.id), "input": _text(ex.input), "expected": _text(ex.expected),
                      "tags": ", ".join(ex.tags) or DASH, "answers": rows})
    return _round_robin(items, MAX_DISAGREEMENTS), len(items)


def _round_robin(items: list[dict], n: int) -> list[dict]:
    """Up to n items, taking turns across tags so every kind of item is shown; eval order kept."""
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(item["tags"], []).append(item)
    picked: list[int] = []
    queues = [list(g) for g in groups.values()]
    while len(picked) < min(n, len(items)):
        for q in queues:
            if q and len(picked) < n:
                picked.append(id(q.pop(0)))
    keep = set(picked)
    return [item for item in items if id(item) in keep]


def retrieval(results: Results) -> dict:
    """hit@k and MRR per retrieval strategy, and what was retrieved for a few items."""
    rows, names = [], []
    for s in results.strategies:
        r = s.retrieval
        if r is None:
            continue
        names.append(s.name)
        rows.append({"strategy": s.name, "k": fmt_num(r.k), "n": fmt_num(r.n),
                     "hit": fmt_pct(r.hit_at_k, ci=False), "mrr": fmt_num(r.mrr, 2)})
    samples = []
    for ex in results.examples:
        if len(samples) >= MAX_RETRIEVAL_SAMPLES or not names:
            break
        got = {n: list(ex.answers[n].sources) if n in ex.answers else [] for n in names}
        if not any(got.values()):
            continue
        want = ex.source
        samples.append({"id": _text(ex.id), "input": _text(ex.input),
                        "expected": DASH if not want else want,
                        "retrieved": [{"strategy": n, "sources": _cite(results, got[n]),
                                       "hit": DASH if not want else ("yes" if want in got[n] else "no")}
                                      for n in names]})
    return {"rows": rows, "samples": samples}


def experiments(results: Results) -> list[dict]:
    """Each experiment the run holds, as a titled table of (series, point, value) rows."""
    exp = results.experiments
    out = []
    if exp.freshness and exp.freshness.strategies:
        rows = [{"series": name, "point": when, "value": _fmt_estimate(estimate(e))}
                for name, v in exp.freshness.strategies.items()
                for when, e in (("before update", v.before_update), ("after update", v.after_update))]
        out.append({"name": "freshness", "title": "Freshness: changed facts right, before and after the update",
                    "head": ("strategy", "when", "share right"), "rows": rows})
    forget = exp.forgetting
    if forget:
        rows = [{"series": "base model", "point": "", "value": _fmt_estimate(estimate(forget.base))}]
        rows += [{"series": name, "point": f"drop {100 * a.drop:+.0f} pts",
                  "value": _fmt_estimate(estimate(a.accuracy))} for name, a in forget.adapters.items()]
        out.append({"name": "forgetting", "title": f"Forgetting: general-ability probe ({forget.n} items)",
                    "head": ("model", "change", "probe accuracy"), "rows": rows})
    curve = exp.data_curve
    if curve and curve.points:
        rows = [{"series": _text(curve.strategy), "point": fmt_num(p.examples),
                 "value": _fmt_estimate(estimate(p.accuracy))} for p in curve.points]
        out.append({"name": "data_curve", "title": "How much data: eval accuracy by training examples",
                    "head": ("strategy", "training examples", "accuracy"), "rows": rows})
    return out


def _fmt_estimate(e: tuple | None) -> str:
    if e is None:
        return DASH
    mean, low, high = e
    share = 0 <= mean <= 1 and (low is None or 0 <= low <= 1) and (high is None or 0 <= high <= 1)
    if share:
        return fmt_pct(e, ci=low is not None and high is not None)
    if low is not None and high is not None:
        return f"{mean:,.4g} ({low:,.4g}–{high:,.4g})"
    return f"{mean:,.4g}"


def comparisons(results: Results) -> list[dict]:
    rows = []
    for c in results.comparisons:
        diff, low, high, p = (num(x) for x in (c.diff, c.low, c.high, c.p_value))
        rows.append({"a": _text(c.a), "b": _text(c.b),
                     "diff": DASH if diff is None else f"{100 * diff:+.0f} pts",
                     "ci": DASH if low is None or high is None else f"{100 * low:+.0f} to {100 * high:+.0f}",
                     "p": DASH if p is None else f"{p:.3g}", "test": _text(c.test),
                     "significant": "yes" if c.significant else "no"})
    return rows


ASSUMPTION_LABELS = {
    "requests_per_day": ("Volume", "requests/day"),
    "horizon_days": ("Horizon", "days"),
    "input_price_per_mtok": ("Input price", "$ per million tokens"),
    "output_price_per_mtok": ("Output price", "$ per million tokens"),
    "hardware_price_per_hour": ("Hardware price", "$ per hour (training, indexing)"),
    "knowledge_changes_per_month": ("Knowledge changes", "per month (each means a retrain or re-index)"),
    "value_per_correct": ("Value per correct answer", "$"),
    "cost_per_error": ("Cost per error", "$"),
    "ownership": ("Ownership costs", "$ one-time set-up and per month, by approach (people, hosting)"),
}


def budget_line(budget) -> str:
    """The run's --budget, and what it measured less deeply than `full`."""
    if budget is None:
        return DASH
    filled = ", ".join(f"{k}: {v}" for k, v in budget.filled.items())
    return f"{budget.name}" + (f" (set {filled}: {budget.left_out})" if filled else " (nothing left out)")


def evaluated_lines(results: Results) -> list[str]:
    """Sequential evaluation, per row: how many eval items it answered and why it stopped (none under
    --budget full: every row answered every item)."""
    seq = results.run.sequential
    if seq is None:
        return []
    out = [f"Sequential evaluation: rounds of about {seq.round_items} items, {seq.rounds} rounds, "
           f"{seq.items} of {seq.of} items answered; stopped: {seq.stopped}. Rule: {seq.rule}."]
    for s in results.strategies:
        e = s.evaluated
        if e is None:
            continue
        if e.status == "dropped":
            out.append(f"{s.name}: answered {e.items} of {e.of} items; dropped after round {e.round}: {e.reason}. "
                       "Its accuracy is over those items only; no paraphrase, repeated-sample or latency probes.")
        elif e.items == e.of:
            out.append(f"{s.name}: answered all {e.of} items.")
        else:
            out.append(f"{s.name}: answered {e.items} of {e.of} items ({e.reason}).")
    return out


def reproducibility(results: Results) -> dict:
    run = results.run
    assumptions = []
    for key, value in results.assumptions.model_dump().items():
        label, unit = ASSUMPTION_LABELS.get(key, (key.replace("_", " ").capitalize(), ""))
        assumptions.append({"label": label, "value": fmt_value(value), "unit": unit if value is not None else ""})
    models = [{"role": role, "name": _text(m.name) + (f" ({m.dtype})" if m.dtype else ""),
               "fingerprint": _text(m.fingerprint)} for role, m in run.models.items() if m is not None]
    seconds = num(run.seconds)
    return {
        "assumptions": assumptions,
        "models": models,
        "files": [{"path": p, "sha256": _text(h)} for p, h in results.task.files.items()],
        "versions": [{"name": k, "version": _text(v)} for k, v in run.versions.items()],
        "seed": _text(run.seed),
        "budget": budget_line(run.budget),
        "hardware": fmt_value(run.hardware.model_dump()),
        "runtime": DASH if seconds is None else f"{seconds:,.0f} s ({seconds / 60:.1f} min)",
        "started": _text(run.started),
        "advisor_version": _text(results.advisor_version),
        "command": _text(run.command),
        "task_root": _text(results.task.root),
        "scoring": fmt_value(results.scoring.model_dump()),
    }


def money_reason(results: Results) -> str | None:
    """What the verdict's row costs against the baseline, in one line for the verdict block: cost per request and
    payback, or "never" with why. The same facts as the reasons list further down, from the numbers in results."""
    rec, a = results.recommendation, results.assumptions
    pick, base = results.strategy(rec.strategy), results.strategy(results.economics.baseline)
    if pick is None or base is None or pick.economics is None or base.economics is None:
        return None
    ew, eb = pick.economics, base.economics
    volume, horizon = f"{count(a.requests_per_day)} requests/day", f"{count(a.horizon_days)} days"
    if pick.name == base.name:
        return (f"Money: {money(ew.cost_per_request)} a request, {money(ew.total_cost)} over {horizon} at {volume}; "
                "it is the baseline, with no set-up to pay back.")
    said = f"Money: a request to {pick.name} costs {money(ew.cost_per_request)} against {money(eb.cost_per_request)} " \
           f"for {base.name}"
    if eb.cost_per_request > 0:
        delta = 1 - ew.cost_per_request / eb.cost_per_request
        said += f" ({pct(abs(delta))} {'cheaper' if delta >= 0 else 'dearer'})"
    month = 365 / 12
    saving = (eb.cost_per_request - ew.cost_per_request) * a.requests_per_day * month
    running = (ew.maintenance_cost - eb.maintenance_cost) / a.horizon_days * month
    extra = ew.setup_cost - eb.setup_cost
    if ew.payback_days is not None:
        said += ("; it has no extra set-up to pay back" if extra <= 0 else
                 f"; its extra set-up ({money(extra)}) is paid back on day {count(math.ceil(ew.payback_days))} at "
                 f"{volume}")
    elif saving <= 0:
        said += f"; it never pays back: it saves nothing per request at {volume}"
    elif saving - running <= 0:
        said += (f"; it never pays back: its extra running costs ({money(running)}/month) exceed what it saves "
                 f"({money(saving)}/month at {volume})")
    else:
        said += (f"; it never pays back within {horizon}: its extra set-up ({money(extra)}) takes longer to repay "
                 f"at {volume}")
    return said + "."


def top_reasons(results: Results, n: int = 3) -> list[str]:
    """The verdict block's reasons: the first (quality, or why there is no recommendation), then the money, then
    the next reason unless it states the baseline's price again (a money reason already said)."""
    reasons = list(results.recommendation.reasons)
    line = money_reason(results)
    if line is None:
        return reasons[:n]
    base = results.strategy(results.economics.baseline)
    said = money(base.economics.cost_per_request)
    return (reasons[:1] + [line] + [r for r in reasons[1:] if said not in r])[:n]


def evidence_text(results: Results) -> str:
    """The sample the verdict rests on and the smallest difference it can detect, in words."""
    ev = results.recommendation.evidence
    if ev is None:
        return f"{fmt_num(results.task.n_eval)} eval items."
    said = (f"{count(ev.n_items)} eval items; {count(ev.tests)} paired test{'s' if ev.tests != 1 else ''} "
            f"({ev.test or 'McNemar exact'}, alpha {ev.alpha:g}, Holm-corrected; intervals of the gaps "
            f"simultaneous over the pairs). ")
    if ev.clusters:
        said += (f"The items fall into {count(ev.clusters)} clusters (a shared cluster field or source document): "
                 "intervals and paired tests are clustered (Wilson on the effective sample size or a cluster "
                 "bootstrap; cluster sign-flip tests). ")
    if results.recommendation.value is not None:
        said += ("The task prices quality: the verdict maximises expected net value (see Value); the margin rule "
                 "does not apply. ")
    else:
        said += (f"The pick must be shown within {100 * ev.margin:.0f} points (decision.margin) of every other "
                 "contender (upper end of the 95% interval of each gap). ")
    if ev.detectable_difference is None:
        said += (f"No accuracy gap, however large, is detectable {ev.power:.0%} of the time with so few items. ")
    else:
        said += (f"The smallest accuracy gap this sample detects {ev.power:.0%} of the time is "
                 f"{100 * ev.detectable_difference:.0f} points; smaller differences go unseen. ")
    if not ev.enough and ev.items_needed:
        said += f"About {count(ev.items_needed)} eval items would be needed for a verdict."
    return said.strip()


def value_text(results: Results) -> str | None:
    """The money decision's numbers per row (advisor.value), or None when the task does not price quality."""
    vd = results.recommendation.value
    if vd is None:
        return None
    unit = f"{count(vd.clusters)} clusters resampled whole" if vd.clusters else "items resampled"
    rows = "; ".join(f"{name}: expected net value {money(r.expected_value)}, best in {pct(r.p_best)} of draws, "
                     f"expected loss {money(r.expected_loss)}"
                     for name, r in sorted(vd.rows.items(), key=lambda x: -x[1].expected_value))
    said = (f"Decision in money over {count(vd.requests)} requests ({vd.method}, {count(vd.draws)} draws, {unit}): "
            f"{rows}. A recommendation needs the pick's expected loss at most {money(vd.tolerance)} "
            f"({points_worth(vd.loss_tolerance)}, economics.loss_tolerance).")
    if vd.evsi:
        gains = ", ".join(f"{count(x.items)} more items {money(x.value)}" for x in vd.evsi)
        said += f" Value of more eval items to this decision: {gains}."
    return said


def fragility_text(results: Results) -> str:
    """How many item scores would overturn the verdict, and which (advisor.recommend.fragility)."""
    f = results.recommendation.fragility
    return f.text if f is not None else "not computed (a results file from an older advisor)."


def fragile(results: Results) -> bool:
    """One or two item scores could overturn the verdict: shown as a caution."""
    f = results.recommendation.fragility
    return f is not None and f.count is not None and f.count <= 2


def accuracy_over(results: Results) -> str:
    """What the accuracy column is over: every eval item, the same subset for every row (sequential evaluation
    stopped, or items only an uncalibrated judge scored left out), or each row's own items (a row dropped)."""
    counted = {s.accuracy.n for s in results.strategies}
    n_eval = results.task.n_eval
    if counted == {n_eval}:
        return f"{fmt_num(n_eval)} eval items"
    if len(counted) == 1:
        return f"{fmt_num(counted.pop())} of the {fmt_num(n_eval)} eval items (the same items for every row)"
    return f"the eval items each row answered (of {fmt_num(n_eval)}; see each row's line above)"


def context(results: Results, chart_list: list[Chart] | None = None) -> dict:
    """Every fact both report files show, as display strings (not yet escaped)."""
    rec = results.recommendation
    shown, n_disagree = disagreements(results)
    task = results.task
    return {
        "task": {"name": _text(task.name), "description": _text(task.description),
                 "n_eval": fmt_num(task.n_eval), "n_train": fmt_num(task.n_train),
                 "n_documents": fmt_num(task.n_documents), "accuracy_over": accuracy_over(results)},
        "rec": {"strategy": _text(rec.strategy), "baseline": _text(rec.baseline),
                "recommended": rec.recommended, "status": rec.status,
                "headline": _text(rec.recommended) if rec.recommended else "Not enough evidence",
                "evidence": evidence_text(results),
                "fragility": fragility_text(results),
                "value": value_text(results),
                "fragile": fragile(results),
                "ruled_out": [f"{name}: {why}" for name, why in rec.ruled_out.items()],
                "top_reasons": top_reasons(results),
                "reasons": list(rec.reasons),
                "cautions": list(rec.cautions),
                "changes": list(rec.sensitivity_text),
                "rule": _text(rec.rule),
                "contenders": ", ".join(rec.contenders) or DASH},
        "rows": table_rows(results),
        "legend": models_legend(results),
        "evaluated": evaluated_lines(results),
        "horizon": fmt_num(results.assumptions.horizon_days),
        "volume": fmt_num(results.assumptions.requests_per_day),
        "baseline": _text(results.economics.baseline),
        "charts": chart_list if chart_list is not None else _charts(results),
        "measures": measures(results),
        "review": review(results),
        "disagreements": shown,
        "n_disagreements": n_disagree,
        "n_examples": len(results.examples),
        "retrieval": retrieval(results),
        "experiments": experiments(results),
        "comparisons": comparisons(results),
        "repro": reproducibility(results),
    }


def _charts(results: Results) -> list[Chart]:
    try:
        return render_charts(results)
    except Exception as e:  # a chart must never cost the user the report
        warnings.warn(f"charts skipped: {e!r}", stacklevel=2)
        return []


# ---------------------------------------------------------------- terminal


def terminal(results: Results, console: Console | None = None) -> None:
    """A comparison that fits 80-120 columns, then the verdict panel."""
    console = console or Console()
    rec = results.recommendation
    pick = rec.recommended
    t = Table(title=f"advisor: {results.task.name or DASH}", box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, padding=(0, 1), title_justify="left")
    t.add_column("Strategy", style="bold", no_wrap=True, min_width=8)
    for name in ("Acc (CI)", "Format", "Tokens", "$/1k req", "p50 s", "Total $"):
        t.add_column(name, justify="right", no_wrap=name != "Acc (CI)", overflow="fold")
    for s in results.strategies:
        e = s.economics
        name = s.name or DASH
        tok = f"{fmt_num(s.tokens.prompt_mean)}/{fmt_num(s.tokens.completion_mean)}"
        winner = name == pick
        t.add_row(Text(("★ " if winner else "") + name, style="bold green" if winner else ""),
                  fmt_pct(s.accuracy), fmt_pct(s.format_adherence, ci=False), tok,
                  fmt_money(_per_1k(e.cost_per_request)),
                  fmt_num(s.latency.p50_seconds, 1), _money_short(e.total_cost),
                  style="on grey15" if winner else None)
    console.print(t)
    horizon = fmt_num(results.assumptions.horizon_days)
    volume = fmt_num(results.assumptions.requests_per_day)
    console.print(Text(f"Acc: share of eval items right (95% CI). Tokens: prompt/answer per request. "
                       f"Total $: over {horizon} days at {volume} requests/day.", style="dim"))
    for m in models_legend(results):
        console.print(Text(f"{m['rows']}: {m['model']}; {m['pricing']}", style="dim"))
    if results.run.budget is not None and results.run.budget.filled:
        console.print(Text(f"Budget {budget_line(results.run.budget)}.", style="dim"))
    for line in evaluated_lines(results):
        console.print(Text(line, style="dim"))
    judge = measures(results)["judge"]
    if judge is not None:
        console.print(Text(judge["line"], style="dim" if judge["calibrated"] else "yellow"))
    body = Text()
    for x in rec.reasons[:3]:
        body.append(f"• {x}\n")
    for x in rec.cautions:
        body.append(f"! {x}\n", style="yellow")
    changes = rec.sensitivity_text
    reviewed = review(results)
    if reviewed is not None:
        body.append(f"\n{reviewed['line']}\n")
        body.append(f"Agreement with the people: {reviewed['agreement']}\n", style="dim")
        if reviewed["ppi"]:
            body.append(f"Prediction-powered accuracy (their random sample): {reviewed['ppi']}\n", style="dim")
    body.append(f"\nSample: {evidence_text(results)}\n", style="dim")
    if value_text(results):
        body.append(f"Value: {value_text(results)}\n", style="dim")
    body.append(f"Fragility: {fragility_text(results)}\n", style="yellow" if fragile(results) else "dim")
    body.append("What would change it: ", style="dim")
    body.append("; ".join(changes[:3]) if changes else "nothing within the volumes tried")
    title = (f"Recommendation: [bold]{_escape_rich(pick)}[/bold]" if pick else
             f"Not enough evidence [dim](leading: {_escape_rich(_text(rec.strategy))}, not a recommendation)[/dim]")
    console.print(Panel(body, title=title, border_style="green" if pick else "yellow"))


def _money_short(x: Any) -> str:
    x = num(x)
    return fmt_money(x) if x is None or abs(x) < 100 else f"${x:,.0f}"


def _escape_rich(s: str) -> str:
    from rich.markup import escape

    return escape(s)


# ---------------------------------------------------------------- Markdown

_MD_PUNCT = re.compile(r"([\\`*_\[\]#|~$])")


def md_text(x: Any) -> str:
    """Data text for Markdown prose: no HTML, no links/images/emphasis, one line."""
    s = str(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_PUNCT.sub(r"\\\1", s)
    return re.sub(r"\s*\n\s*", " ", s).strip()


def md_cell(x: Any) -> str:
    """Data text for a Markdown table cell: as md_text, line breaks kept as <br>."""
    lines = [md_text(line) for line in str(x).strip().splitlines()]
    return "<br>".join(line for line in lines if line) or DASH


def markdown(results: Results, chart_list: list[Chart] | None = None, chart_dir: str = CHART_DIR) -> str:
    env = _env(autoescape=False)
    env.filters["md"] = md_text
    env.filters["cell"] = md_cell
    ctx = context(results, chart_list)
    return env.get_template("report.md.j2").render(**ctx, chart_dir=chart_dir)


# ---------------------------------------------------------------- HTML


def data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def html(results: Results, chart_list: list[Chart] | None = None) -> str:
    env = _env(autoescape=True)
    env.filters["data_uri"] = data_uri
    return env.get_template("report.html.j2").render(**context(results, chart_list))


def _env(autoescape: bool) -> Environment:
    return Environment(loader=PackageLoader("advisor", "templates"),
                       autoescape=select_autoescape(default=autoescape, default_for_string=autoescape),
                       trim_blocks=True, lstrip_blocks=True)


def write_reports(results: Results, out_dir: Path) -> None:
    """report.md (+ charts/*.png beside it) and a self-contained report.html."""
    out_dir = Path(out_dir)
    chart_list = _charts(results)
    chart_path = out_dir / CHART_DIR
    for c in chart_list:
        atomic_write_bytes(chart_path / f"{c.slug}.png", c.png)
    if chart_path.is_dir():  # charts of an earlier render that this one no longer has
        keep = {f"{c.slug}.png" for c in chart_list}
        for old in chart_path.glob("*.png"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
    atomic_write_text(out_dir / "report.md", markdown(results, chart_list))
    atomic_write_text(out_dir / "report.html", html(results, chart_list))
