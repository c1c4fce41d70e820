"""Every report chart, drawn once from a run's Results with matplotlib (Agg, no pyplot state).

`charts(results)` returns a list of Chart (slug, title, caption, PNG bytes). The HTML
report embeds the bytes as data: URIs; the Markdown report writes them beside itself
as charts/<slug>.png. A chart whose data the run does not have (None, NaN) is left out.
"""
from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # no display; harmless if a backend was already chosen elsewhere

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter  # noqa: E402

from advisor.results import Epoch, Estimate, Results  # noqa: E402

DPI = 110
WIN = "#2e7d32"
OTHER = "#5b7fa6"
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd"]


@dataclass
class Chart:
    slug: str  # file name stem and HTML id
    title: str
    caption: str
    png: bytes


# ---------------------------------------------------------------- helpers


def num(x: Any) -> float | None:
    """A finite number as float; anything else (None, bool, text, NaN) as None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def estimate(x: Estimate | float | None) -> tuple[float, float | None, float | None] | None:
    """(mean, low, high) from an Estimate or a bare number; None when there is no finite mean."""
    if isinstance(x, Estimate):
        m = num(x.mean)
        return None if m is None else (m, num(x.low), num(x.high))
    m = num(x)
    return None if m is None else (m, None, None)


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _t(text: Any) -> str:
    """Text for a label: a "$" from data (or a price) is a dollar sign, not TeX math."""
    return str(text).replace("$", r"\$")


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    # No metadata: the same results.json gives byte-identical charts.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _errs(points: list[tuple[float, float | None, float | None]]) -> list[list[float]] | None:
    if not any(lo is not None and hi is not None for _, lo, hi in points):
        return None
    return [[max(0.0, m - lo) if lo is not None else 0.0 for m, lo, _ in points],
            [max(0.0, hi - m) if hi is not None else 0.0 for m, _, hi in points]]


def _rotate_if_crowded(ax: Any, labels: list[str]) -> None:
    if len(labels) > 4 or sum(len(x) for x in labels) > 40:
        for t in ax.get_xticklabels():
            t.set_rotation(25)
            t.set_ha("right")


# ---------------------------------------------------------------- charts


def accuracy_chart(results: Results) -> Chart | None:
    rows = [(s.name, estimate(s.accuracy)) for s in results.strategies]
    rows = [(n, e) for n, e in rows if e is not None]
    if not rows:
        return None
    rec = results.recommendation.recommended
    names = [n for n, _ in rows]
    points = [e for _, e in rows]
    fig, ax = _figure()
    ax.bar([_t(n) for n in names], [m for m, _, _ in points], yerr=_errs(points), capsize=4,
           color=[WIN if n == rec else OTHER for n in names], ecolor="#333")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy")
    _rotate_if_crowded(ax, names)
    return Chart("accuracy", "Accuracy per strategy",
                 "Share of eval items answered correctly; bars are 95% intervals (Wilson for pass/fail scores, "
                 "bootstrap otherwise). The recommended strategy, if there is one, is green.", _png(fig))


def frontier_chart(results: Results) -> Chart | None:
    pts = []
    for s in results.strategies:
        acc, cost = estimate(s.accuracy), num(s.economics.cost_per_request)
        if acc is not None and cost is not None:
            pts.append((s.name, cost, acc[0]))
    if not pts:
        return None
    rec = results.recommendation.recommended
    fig, ax = _figure()
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    costs = [c * 1000 for _, c, _ in pts]
    ax.scatter(costs, [a for _, _, a in pts], s=50, zorder=3,
               color=[WIN if n == rec else OTHER for n, _, _ in pts])
    # The frontier: strategies no other strategy beats on both cost and accuracy.
    front = sorted((c * 1000, a) for n, c, a in pts
                   if not any(c2 <= c and a2 >= a and (c2, a2) != (c, a) for _, c2, a2 in pts))
    if len(front) > 1:
        ax.plot(*zip(*front), color="#999", linestyle="--", linewidth=1, zorder=2)
    for n, c, a in pts:
        ax.annotate(_t(n), (c * 1000, a), textcoords="offset points", xytext=(5, 4), fontsize=8,
                    fontweight="bold" if n == rec else "normal")
    positive = [c for c in costs if c > 0]
    if positive and len(positive) == len(costs) and max(positive) / min(positive) > 50:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(left=0, right=max(costs) * 1.25 if max(costs) > 0 else 1)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _t(f"${v:.3g}")))
    ax.set_ylim(-0.03, 1.08)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(_t("cost per 1,000 requests ($)"))
    ax.set_ylabel("accuracy")
    return Chart("frontier", "Accuracy vs cost per request",
                 "Up and to the left is better; the dashed line joins strategies that no other strategy "
                 "beats on both accuracy and cost.", _png(fig))


def cost_sweep_chart(results: Results) -> Chart | None:
    sweep = results.economics.sweep
    volumes = [num(v) for v in sweep.requests_per_day]
    totals = sweep.total_cost
    if not volumes or None in volumes or not totals:
        return None
    rec = results.recommendation.recommended
    base = results.economics.baseline
    fig, ax = _figure(7.0, 4.0)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    curves: dict[str, list[float]] = {}
    for i, (name, ys) in enumerate(totals.items()):
        ys = [num(y) for y in ys]
        if len(ys) != len(volumes) or None in ys:
            continue
        curves[name] = ys
        ax.plot(volumes, [max(y, 1e-9) for y in ys], label=_t(name), color=PALETTE[i % len(PALETTE)],
                linewidth=2.6 if name == rec else 1.3, linestyle="--" if name == base else "-")
    if not curves:
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    volume = num(results.assumptions.requests_per_day)
    if volume:
        ax.axvline(volume, color="#444", linestyle=":", linewidth=1)
        ax.annotate(f"task volume\n{volume:,.0f}/day", (volume, 0.02), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color="#444")
    # Break-even volumes against the baseline, as results.json states them.
    marked = False
    lo, hi = min(volumes), max(volumes)
    for s in results.strategies:
        be = num(s.economics.break_even_requests_per_day)
        name = s.name
        if be is None or be <= 0 or name == base or name not in curves or not lo <= be <= hi:
            continue
        y = _interp_loglog(volumes, curves.get(base) or curves[name], be)
        ax.scatter([be], [y], marker="o", s=60, facecolor="white", edgecolor="#c0392b", linewidth=2, zorder=5,
                   label=None if marked else _t(f"break-even vs {base}"))
        ax.annotate(_t(f"{name}\n{be:,.1f}/day"), (be, y), textcoords="offset points", xytext=(6, -18), fontsize=7,
                    color="#c0392b")
        marked = True
    ax.set_xlabel("requests per day")
    horizon = num(results.assumptions.horizon_days)
    ax.set_ylabel(_t(f"total cost over {horizon:,.0f} days ($)" if horizon else "total cost ($)"))
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return Chart("cost_vs_volume", "Total cost vs requests per day",
                 "Set-up, maintenance and per-request cost over the horizon (log-log). The dotted line is the "
                 f"task's volume; circles mark where a strategy becomes cheaper than the baseline ({base or '–'}).",
                 _png(fig))


def _interp_loglog(xs: list[float], ys: list[float], x: float) -> float:
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1 and x0 > 0 and x1 > x0 and y0 > 0 and y1 > 0:
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return ys[0] if ys else 1.0


def _wrap(label: str, width: int = 14) -> str:
    """A long tag name on up to three lines (breaking at spaces, dashes and after underscores)."""
    lines = textwrap.wrap(label.replace("_", "_ "), width, max_lines=3, placeholder="…")
    return "\n".join(line.replace("_ ", "_") for line in lines) or label


def _overlap(fig: Figure, labels: list) -> bool:
    """Do any two tick labels' drawn boxes overlap?"""
    fig.canvas.draw()
    boxes = sorted((t.get_window_extent() for t in labels if t.get_text()), key=lambda b: b.x0)
    return any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:]))


def _untangle(fig: Figure, ax: Any, names: list[str]) -> None:
    """Tag names side by side, wrapped, when they fit; else one line each, vertical, so none overlap."""
    fig.tight_layout()
    if _overlap(fig, ax.get_xticklabels()):
        short = [n if len(n) <= 30 else n[:29] + "…" for n in names]
        ax.set_xticklabels([_t(n) for n in short], rotation=90, ha="center", fontsize=7)


def by_tag_figure(results: Results) -> Figure | None:
    """The per-tag chart as a figure (by_tag_chart draws it; tests measure its tick labels)."""
    strategies = [s for s in results.strategies if s.by_tag]
    tags: list[str] = []
    for s in strategies:
        tags += [t for t in s.by_tag if t not in tags]
    if not tags:
        return None
    rec = results.recommendation.recommended
    fig, ax = _figure(7.0, 3.8)
    width = 0.8 / len(strategies)
    for i, s in enumerate(strategies):
        pts = [estimate(s.by_tag.get(t)) or (0.0, None, None) for t in tags]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(tags))]
        ax.bar(xs, [m for m, _, _ in pts], width=width * 0.95, yerr=_errs(pts), capsize=2,
               label=_t(s.name), color=PALETTE[i % len(PALETTE)], ecolor="#555",
               edgecolor="black" if s.name == rec else "none", linewidth=1.2)
    ax.set_xticks(range(len(tags)))
    ax.set_xticklabels([_t(_wrap(t)) for t in tags], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("accuracy")
    # The legend goes above the bars, so that it never sits on the (possibly rotated) tag names below them.
    ax.legend(fontsize=7, frameon=False, ncol=min(4, len(strategies)), loc="lower center",
              bbox_to_anchor=(0.5, 1.0))
    _untangle(fig, ax, tags)
    return fig


def by_tag_chart(results: Results) -> Chart | None:
    fig = by_tag_figure(results)
    if fig is None:
        return None
    counts = sorted({e.n for s in results.strategies for e in s.by_tag.values()})
    sizes = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}" if counts else "–"
    return Chart("accuracy_by_tag", "Accuracy per eval tag",
                 f"Accuracy on each group of eval items ({sizes} items a tag), with 95% intervals; the recommended "
                 "strategy is outlined. A tag with few items says little: the verdict's reasons use only tags with "
                 "enough items and a significant gap.", _png(fig))


def training_chart(results: Results) -> Chart | None:
    # Strategies sharing one adapter (lora, lora+rag) share one history: draw it once, naming both.
    groups: dict[str, tuple[list[str], tuple[Epoch, ...]]] = {}
    for s in results.strategies:
        history = s.setup.training.history if s.setup.training else ()
        if not history:
            continue
        key = repr(history)
        groups.setdefault(key, ([], history))[0].append(s.name)
    if not groups:
        return None
    fig, ax = _figure()
    for i, (names, history) in enumerate(groups.values()):
        color = PALETTE[i % len(PALETTE)]
        label = ", ".join(names)
        for field, style in (("train_loss", "-"), ("val_loss", "--")):
            pts = [(num(h.epoch), num(getattr(h, field))) for h in history]
            pts = [(e, v) for e, v in pts if e is not None and v is not None]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=color, label=_t(f"{label}: {field.replace('_', ' ')}"))
    if not ax.lines:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, frameon=False)
    return Chart("training_loss", "Fine-tuning loss per epoch",
                 "Training loss (solid) and held-out validation loss (dashed) of each LoRA adapter.", _png(fig))


# ---------------------------------------------------------------- experiments


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[tuple]]) -> None:
    width = 0.8 / len(series)
    for i, (label, pts) in enumerate(series.items()):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(groups))]
        ax.bar(xs, [m for m, _, _ in pts], width=width * 0.95, yerr=_errs(pts), capsize=2, label=_t(label),
               color=PALETTE[i % len(PALETTE)], ecolor="#555")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([_t(g) for g in groups])
    _rotate_if_crowded(ax, groups)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def freshness_chart(results: Results) -> Chart | None:
    fresh = results.experiments.freshness
    rows = fresh.strategies if fresh else {}
    if not rows:
        return None
    names = list(rows)
    fig, ax = _figure()
    _grouped_bars(ax, names, {
        "before the update": [estimate(rows[n].before_update) or (0.0, None, None) for n in names],
        "after the update": [estimate(rows[n].after_update) or (0.0, None, None) for n in names],
    })
    ax.set_ylabel("changed facts right")
    ax.legend(fontsize=7, frameon=False)
    return Chart("experiment_freshness", "Experiment: freshness",
                 "Share of the changed facts answered with the new value, before and after the documents changed; "
                 "nothing was retrained in between.", _png(fig))


def forgetting_chart(results: Results) -> Chart | None:
    exp = results.experiments.forgetting
    base = estimate(exp.base) if exp else None
    if base is None or not exp.adapters:
        return None
    names = ["base model"] + list(exp.adapters)
    pts = [base] + [estimate(a.accuracy) or (0.0, None, None) for a in exp.adapters.values()]
    fig, ax = _figure()
    _grouped_bars(ax, names, {"general-ability probe": pts})
    ax.set_ylabel("probe accuracy")
    return Chart("experiment_forgetting", "Experiment: forgetting",
                 f"Accuracy on {exp.n} general questions the base model answers, with and without each "
                 "adapter; a drop is ability lost to fine-tuning.", _png(fig))


def data_curve_chart(results: Results) -> Chart | None:
    exp = results.experiments.data_curve
    pts = [(num(p.examples), estimate(p.accuracy)) for p in exp.points] if exp else []
    pts = [(x, e) for x, e in pts if x is not None and e is not None]
    if not pts:
        return None
    xs, es = [x for x, _ in pts], [e for _, e in pts]
    fig, ax = _figure()
    ax.plot(xs, [m for m, _, _ in es], marker="o", color=PALETTE[0], label=_t(exp.strategy))
    if all(lo is not None and hi is not None for _, lo, hi in es):
        ax.fill_between(xs, [lo for _, lo, _ in es], [hi for _, _, hi in es], color=PALETTE[0], alpha=0.15)
    ax.set_xlabel("training examples")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("eval accuracy")
    return Chart("experiment_data_curve", "Experiment: how much data",
                 "Eval accuracy of the fine-tuned model against the number of training examples; "
                 "the band is the 95% interval.", _png(fig))


# ---------------------------------------------------------------- all


CHARTS: list[Callable[[Results], Chart | None]] = [accuracy_chart, frontier_chart, cost_sweep_chart, by_tag_chart,
                                                training_chart, freshness_chart, forgetting_chart, data_curve_chart]


def charts(results: Results) -> list[Chart]:
    """Every chart the run has the data for, in report order."""
    return [c for c in (f(results) for f in CHARTS) if c is not None]
