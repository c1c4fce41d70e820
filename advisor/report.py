"""Render results.json: terminal (rich), Markdown, and one self-contained HTML file.

The report only renders what results.json holds; `advisor report DIR` re-renders it.
Any key may be missing or None; it then shows as "–".

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
from advisor.charts import Chart, charts as render_charts, dig, estimate, num

DASH = "–"
CHART_DIR = "charts"
MAX_DISAGREEMENTS = 12
MAX_RETRIEVAL_SAMPLES = 5


# ---------------------------------------------------------------- formatting


def _dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def fmt_pct(e: dict | float | None, ci: bool = True) -> str:
    est = estimate(e)
    if est is None:
        return DASH
    mean, low, high = est
    if not ci or low is None or high is None:
        return f"{100 * mean:.0f}%"
    return f"{100 * mean:.0f}% ({100 * low:.0f}–{100 * high:.0f})"


def fmt_money(x: float | None) -> str:
    x = num(x)
    if x is None:
        return DASH
    if x != 0 and abs(x) < 0.01:
        decimals = min(8, 1 - math.floor(math.log10(abs(x))))  # two significant digits
        return f"${x:.{decimals}f}"
    return f"${x:,.2f}"


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


def _strategies(results: dict) -> list[dict]:
    return [s for s in (results.get("strategies") or []) if isinstance(s, dict)]


def _cite(results: dict, sources: Any) -> str:
    """Retrieved document ids as citations: the title, date and URL a document carries, else its id."""
    meta = _dict(_dict(results.get("task")).get("document_meta"))
    out = []
    for source in sources or []:
        m = _dict(meta.get(str(source)))
        extra = ", ".join(str(m[k]) for k in ("updated", "url") if m.get(k))
        name = f"{m['title']} ({source})" if m.get("title") else str(source)
        out.append(f"{name} [{extra}]" if extra else name)
    return "; ".join(out) or DASH


def _examples(results: dict) -> list[dict]:
    return [ex for ex in (results.get("examples") or []) if isinstance(ex, dict)]


def fmt_pricing(p: Any, assumptions: Any) -> str:
    """The price assumption behind a row's cost per request (harness.pricing), in words."""
    p, a = _dict(p), _dict(assumptions)

    def tokens(src: dict) -> str:
        inp, out = num(src.get("input_price_per_mtok")), num(src.get("output_price_per_mtok"))
        return DASH if inp is None or out is None else f"${inp:,.4g} in / ${out:,.4g} out per M tokens"

    kind = p.get("kind")
    if kind == "self-hosted":
        hour, secs = num(p.get("hardware_price_per_hour")), num(p.get("seconds_per_request"))
        if hour is None or secs is None:
            return "self-hosted"
        return f"self-hosted: ${hour:,.4g}/hour × {secs:,.3g} s per request (measured, batched)"
    if kind in ("hosted", "model token prices"):
        return f"{kind}: {tokens(p)}"
    return f"task token prices: {tokens(a)}"


def table_rows(results: dict) -> list[dict[str, str]]:
    """One dict of display strings per strategy: the same facts in every format."""
    rows = []
    for s in _strategies(results):
        e = s.get("economics") or {}
        rows.append({
            "Strategy": str(s.get("name") or DASH),
            "Model": _text(s.get("model")),
            "Accuracy (95% CI)": fmt_pct(s.get("accuracy")),
            "Self-agreement": fmt_pct(dig(s, "consistency", "self_agreement"), ci=False),
            "Paraphrase": fmt_pct(dig(s, "consistency", "paraphrase_agreement"), ci=False),
            "Format": fmt_pct(s.get("format_adherence"), ci=False),
            "Prompt tok": fmt_num(dig(s, "tokens", "prompt_mean")),
            "Answer tok": fmt_num(dig(s, "tokens", "completion_mean")),
            "$ / 1k req": fmt_money(_per_1k(e.get("cost_per_request"))),
            "Pricing": fmt_pricing(s.get("pricing"), results.get("assumptions")),
            "p50 (s)": fmt_num(dig(s, "latency", "p50_seconds"), 2),
            "p95 (s)": fmt_num(dig(s, "latency", "p95_seconds"), 2),
            "Set-up": fmt_money(e.get("setup_cost")),
            "Total (horizon)": fmt_money(e.get("total_cost")),
            "ROI": _roi(e.get("roi")),
        })
    return rows


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


def disagreements(results: dict) -> tuple[list[dict], int]:
    """Eval items where the strategies' scores differ, side by side; (shown, how many in all)."""
    items = []
    for ex in _examples(results):
        answers = _dict(ex.get("answers"))
        scores = {num(a.get("score")) for a in answers.values() if isinstance(a, dict)}
        if len(scores) < 2:
            continue
        rows = []
        for name, a in answers.items():
            a = a if isinstance(a, dict) else {}
            label, css = _correct_label(a.get("score"))
            fmt_ok = a.get("format_ok")
            rows.append({"strategy": str(name), "text": _text(a.get("text")), "verdict": label, "css": css,
                         "format": DASH if fmt_ok is None else ("yes" if fmt_ok else "no"),
                         "sources": _cite(results, a.get("sources"))})
        items.append({"id": _text(ex.get("id")), "input": _text(ex.get("input")),
                      "expected": _text(ex.get("expected")), "tags": ", ".join(map(str, ex.get("tags") or [])) or DASH,
                      "answers": rows})
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


def retrieval(results: dict) -> dict:
    """hit@k and MRR per retrieval strategy, and what was retrieved for a few items."""
    rows, names = [], []
    for s in _strategies(results):
        r = s.get("retrieval")
        if not isinstance(r, dict):
            continue
        names.append(str(s.get("name")))
        rows.append({"strategy": str(s.get("name")), "k": fmt_num(r.get("k")), "n": fmt_num(r.get("n")),
                     "hit": fmt_pct(r.get("hit_at_k"), ci=False), "mrr": fmt_num(r.get("mrr"), 2)})
    samples = []
    for ex in _examples(results):
        if len(samples) >= MAX_RETRIEVAL_SAMPLES or not names:
            break
        answers = _dict(ex.get("answers"))
        got = {n: [str(x) for x in dig(answers, n, "sources", default=[])] for n in names}
        if not any(got.values()):
            continue
        want = ex.get("source")
        samples.append({"id": _text(ex.get("id")), "input": _text(ex.get("input")),
                        "expected": DASH if not want else str(want),
                        "retrieved": [{"strategy": n, "sources": _cite(results, got[n]),
                                       "hit": DASH if not want else ("yes" if want in got[n] else "no")}
                                      for n in names]})
    return {"rows": rows, "samples": samples}


def experiments(results: dict) -> list[dict]:
    """Each experiment results.json holds, as a titled table of (series, point, value) rows."""
    exp = _dict(results.get("experiments"))
    out = []
    fresh = _dict(dig(exp, "freshness", "strategies", default={}))
    if fresh:
        rows = [{"series": name, "point": when.replace("_", " "), "value": _fmt_estimate(estimate(v.get(when)))}
                for name, v in fresh.items() for when in ("before_update", "after_update")]
        out.append({"name": "freshness", "title": "Freshness: changed facts right, before and after the update",
                    "head": ("strategy", "when", "share right"), "rows": rows})
    forget = _dict(exp.get("forgetting"))
    if forget.get("base"):
        rows = [{"series": "base model", "point": "", "value": _fmt_estimate(estimate(forget["base"]))}]
        rows += [{"series": name, "point": f"drop {100 * a.get('drop', 0):+.0f} pts",
                  "value": _fmt_estimate(estimate(a.get("accuracy")))}
                 for name, a in _dict(forget.get("adapters")).items()]
        out.append({"name": "forgetting", "title": f"Forgetting: general-ability probe ({forget.get('n', DASH)} items)",
                    "head": ("model", "change", "probe accuracy"), "rows": rows})
    curve = _dict(exp.get("data_curve"))
    if curve.get("points"):
        rows = [{"series": _text(curve.get("strategy")), "point": fmt_num(p.get("examples")),
                 "value": _fmt_estimate(estimate(p.get("accuracy")))} for p in curve["points"]]
        out.append({"name": "data_curve", "title": "How much data: eval accuracy by training examples",
                    "head": ("strategy", "training examples", "accuracy"), "rows": rows})
    return out


def _fmt_estimate(e: tuple | None) -> str:
    if e is None:
        return DASH
    mean, low, high = e
    share = 0 <= mean <= 1 and (low is None or 0 <= low <= 1) and (high is None or 0 <= high <= 1)
    if share:
        return fmt_pct({"mean": mean, "low": low, "high": high}, ci=low is not None and high is not None)
    if low is not None and high is not None:
        return f"{mean:,.4g} ({low:,.4g}–{high:,.4g})"
    return f"{mean:,.4g}"


def comparisons(results: dict) -> list[dict]:
    rows = []
    for c in results.get("comparisons") or []:
        if not isinstance(c, dict):
            continue
        diff, low, high, p = (num(c.get(k)) for k in ("diff", "low", "high", "p_value"))
        rows.append({"a": _text(c.get("a")), "b": _text(c.get("b")),
                     "diff": DASH if diff is None else f"{100 * diff:+.0f} pts",
                     "ci": DASH if low is None or high is None else f"{100 * low:+.0f} to {100 * high:+.0f}",
                     "p": DASH if p is None else f"{p:.3g}", "test": _text(c.get("test")),
                     "significant": DASH if c.get("significant") is None else ("yes" if c["significant"] else "no")})
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


def reproducibility(results: dict) -> dict:
    run = _dict(results.get("run"))
    assumptions = []
    for key, value in _dict(results.get("assumptions")).items():
        label, unit = ASSUMPTION_LABELS.get(key, (str(key).replace("_", " ").capitalize(), ""))
        assumptions.append({"label": label, "value": fmt_value(value), "unit": unit if value is not None else ""})
    models = []
    for role, m in _dict(run.get("models")).items():
        if isinstance(m, dict):
            models.append({"role": str(role), "name": _text(m.get("name")), "fingerprint": _text(m.get("fingerprint"))})
    seconds = num(run.get("seconds"))
    return {
        "assumptions": assumptions,
        "models": models,
        "files": [{"path": str(p), "sha256": _text(h)} for p, h in _dict(dig(results, "task", "files")).items()],
        "versions": [{"name": str(k), "version": _text(v)} for k, v in _dict(run.get("versions")).items()],
        "seed": _text(run.get("seed")),
        "hardware": fmt_value(run.get("hardware")),
        "runtime": DASH if seconds is None else f"{seconds:,.0f} s ({seconds / 60:.1f} min)",
        "started": _text(run.get("started")),
        "advisor_version": _text(results.get("advisor_version")),
        "command": _text(run.get("command")),
        "task_root": _text(dig(results, "task", "root")),
        "scoring": fmt_value(results.get("scoring")),
    }


def context(results: dict, chart_list: list[Chart] | None = None) -> dict:
    """Every fact both report files show, as display strings (not yet escaped)."""
    rec = results.get("recommendation") or {}
    shown, n_disagree = disagreements(results)
    task = results.get("task") or {}
    return {
        "task": {"name": _text(task.get("name")), "description": _text(task.get("description")),
                 "n_eval": fmt_num(task.get("n_eval")), "n_train": fmt_num(task.get("n_train")),
                 "n_documents": fmt_num(task.get("n_documents"))},
        "rec": {"strategy": _text(rec.get("strategy")), "baseline": _text(rec.get("baseline")),
                "top_reasons": [str(x) for x in (rec.get("reasons") or [])[:3]],
                "reasons": [str(x) for x in rec.get("reasons") or []],
                "cautions": [str(x) for x in rec.get("cautions") or []],
                "changes": [str(x) for x in rec.get("sensitivity_text") or []],
                "rule": _text(rec.get("rule")),
                "contenders": ", ".join(map(str, rec.get("contenders") or [])) or DASH},
        "rows": table_rows(results),
        "horizon": fmt_num(dig(results, "assumptions", "horizon_days")),
        "volume": fmt_num(dig(results, "assumptions", "requests_per_day")),
        "baseline": _text(dig(results, "economics", "baseline")),
        "charts": chart_list if chart_list is not None else _charts(results),
        "disagreements": shown,
        "n_disagreements": n_disagree,
        "n_examples": len(_examples(results)),
        "retrieval": retrieval(results),
        "experiments": experiments(results),
        "comparisons": comparisons(results),
        "repro": reproducibility(results),
    }


def _charts(results: dict) -> list[Chart]:
    try:
        return render_charts(results)
    except Exception as e:  # a chart must never cost the user the report
        warnings.warn(f"charts skipped: {e!r}", stacklevel=2)
        return []


# ---------------------------------------------------------------- terminal


def terminal(results: dict, console: Console | None = None) -> None:
    """A comparison that fits 80-120 columns, then the verdict panel."""
    console = console or Console()
    rec = results.get("recommendation") or {}
    pick = rec.get("strategy")
    t = Table(title=f"advisor: {dig(results, 'task', 'name', default=DASH)}", box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, padding=(0, 1), title_justify="left")
    t.add_column("Strategy", style="bold", no_wrap=True, min_width=8)
    for name in ("Acc (CI)", "Format", "Tokens", "$/1k req", "p50 s", "Total $"):
        t.add_column(name, justify="right", no_wrap=name != "Acc (CI)", overflow="fold")
    for s in _strategies(results):
        e = s.get("economics") or {}
        name = str(s.get("name") or DASH)
        tok = f"{fmt_num(dig(s, 'tokens', 'prompt_mean'))}/{fmt_num(dig(s, 'tokens', 'completion_mean'))}"
        winner = name == pick
        t.add_row(Text(("★ " if winner else "") + name, style="bold green" if winner else ""),
                  fmt_pct(s.get("accuracy")), fmt_pct(s.get("format_adherence"), ci=False), tok,
                  fmt_money(_per_1k(e.get("cost_per_request"))),
                  fmt_num(dig(s, "latency", "p50_seconds"), 1), _money_short(e.get("total_cost")),
                  style="on grey15" if winner else None)
    console.print(t)
    horizon = fmt_num(dig(results, "assumptions", "horizon_days"))
    volume = fmt_num(dig(results, "assumptions", "requests_per_day"))
    console.print(Text(f"Acc: share of eval items right (95% CI). Tokens: prompt/answer per request. "
                       f"Total $: over {horizon} days at {volume} requests/day.", style="dim"))
    for s in _strategies(results):
        console.print(Text(f"{s.get('name') or DASH}: {_text(s.get('model'))}; "
                           f"{fmt_pricing(s.get('pricing'), results.get('assumptions'))}", style="dim"))
    body = Text()
    for x in (rec.get("reasons") or [])[:3]:
        body.append(f"• {x}\n")
    for x in rec.get("cautions") or []:
        body.append(f"! {x}\n", style="yellow")
    changes = rec.get("sensitivity_text") or []
    body.append("\nWhat would change it: ", style="dim")
    body.append("; ".join(map(str, changes[:2])) if changes else "nothing within the volumes tried")
    console.print(Panel(body, title=f"Recommendation: [bold]{_escape_rich(_text(pick))}[/bold]",
                        border_style="green"))


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


def markdown(results: dict, chart_list: list[Chart] | None = None, chart_dir: str = CHART_DIR) -> str:
    env = _env(autoescape=False)
    env.filters["md"] = md_text
    env.filters["cell"] = md_cell
    ctx = context(results, chart_list)
    return env.get_template("report.md.j2").render(**ctx, chart_dir=chart_dir)


# ---------------------------------------------------------------- HTML


def data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def html(results: dict, chart_list: list[Chart] | None = None) -> str:
    env = _env(autoescape=True)
    env.filters["data_uri"] = data_uri
    return env.get_template("report.html.j2").render(**context(results, chart_list))


def _env(autoescape: bool) -> Environment:
    return Environment(loader=PackageLoader("advisor", "templates"),
                       autoescape=select_autoescape(default=autoescape, default_for_string=autoescape),
                       trim_blocks=True, lstrip_blocks=True)


def write_reports(results: dict, out_dir: Path) -> None:
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
