"""The report, rendered from the results.json of a real (tiny) run and opened in a real browser.

Headless Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
no port, no extra dependency): it records every network request and console message
while report.html loads, checks what is visible, and takes a screenshot.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt  # rich's own dependency
from rich.console import Console

from advisor import report
from advisor.charts import charts
from advisor.results import Results

PLANT = "<script>alert(1)</script>"
PLANT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def results(finished_run) -> Results:
    """The run's results, as the run wrote them."""
    return Results.model_validate(copy.deepcopy(finished_run.results))


def as_dict(results: Results) -> dict:
    """An editable copy; tests change it and validate it again (Results is frozen)."""
    return results.model_dump(mode="json")


def render(results: Results, out: Path) -> tuple[str, str]:
    report.write_reports(results, out)
    return (out / "report.html").read_text(), (out / "report.md").read_text()


def plant(results: Results) -> Results:
    """Put a script tag into a document name, a question, model answers and the reasons."""
    r = as_dict(results)
    names = [s["name"] for s in r["strategies"]]
    ex = r["examples"][0]
    ex["input"] = f"What is {PLANT} | the price?\nsecond line"
    ex["source"] = f"evil{PLANT}.md"
    for i, name in enumerate(names):  # make the item a disagreement so it is shown side by side
        a = ex["answers"][name]
        a["text"] = f"{PLANT} answer from {name} | with a pipe\n<img src=x onerror=alert(2)> [link](http://evil.test)"
        a["score"] = float(i % 2)
        a["sources"] = [f"evil{PLANT}.md"]
    r["task"]["description"] = f"a {PLANT} shop"
    r["recommendation"]["reasons"][0] = f"{PLANT} reason"
    return Results.model_validate(r)


# ---------------------------------------------------------------- static checks


def test_html_is_one_self_contained_file(results, tmp_path):
    html, _ = render(results, tmp_path)
    srcs = re.findall(r"""\s(?:src|href|srcset|action|poster|data)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I)
    assert srcs, "expected at least the charts' src attributes"
    for url in srcs:
        assert not re.match(r"(?i)\s*(https?:)?//", url), url
        assert url.startswith(("data:", "#")), url
    assert not re.search(r"(?i)<script|<link\b|@import|url\(|<iframe|<object|<embed", html)
    imgs = re.findall(r"<img\b[^>]*>", html)
    assert len(imgs) == len(charts(results)) >= 5  # accuracy, frontier, cost sweep, tags, training loss
    for img in imgs:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', img), img[:120]
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        assert base64.b64decode(uri).startswith(b"\x89PNG\r\n\x1a\n")


def test_html_has_every_section_verdict_first(results, tmp_path):
    html, _ = render(results, tmp_path)
    rec = results.recommendation
    order = ["verdict", "comparison", "measures", "charts", "evidence", "disagreements", "retrieval", "comparisons",
             "reasons", "assumptions"]
    positions = [html.find(f'id="{x}"') for x in order]
    assert all(p > 0 for p in positions), dict(zip(order, positions))
    assert positions == sorted(positions)
    verdict = html[positions[0]:positions[1]]
    assert rec.strategy in verdict
    from markupsafe import escape

    top = report.top_reasons(results)  # the first reason, the money, then the next reasons
    assert top[0] == rec.reasons[0] and top[1] == report.money_reason(results) and len(top) == 3
    for reason in top:
        assert str(escape(reason)) in verdict
    for text in rec.sensitivity_text:
        assert str(escape(text)) in verdict
    win = re.findall(r'<tr class="win"><td>([^<]+)<', html[positions[1]:positions[2]])
    assert win == ([rec.recommended] if rec.recommended else [])  # no row is marked when none is recommended
    assert str(escape(report.evidence_text(results))) in verdict
    for s in results.strategies:
        assert f"<td>{s.name}" in html
    for chart in ("accuracy", "frontier", "cost_vs_volume", "accuracy_by_tag", "training_loss"):
        assert f'id="chart-{chart}"' in html
    for fact in (results.run.command, results.run.models["generator"].fingerprint,
                 *results.task.files.values(), results.run.versions["torch"]):
        assert str(escape(fact)) in html, fact


def test_markdown_has_the_same_facts_and_chart_files(results, tmp_path):
    _, md = render(results, tmp_path)
    rec = results.recommendation
    assert md.index("## Verdict") < md.index("## Comparison") < md.index("## Charts") < md.index("## Evidence")
    if rec.recommended:
        assert f"## Verdict: **{rec.strategy}**" in md
    else:
        assert "## Verdict: not enough evidence" in md and f"Leading so far: **{rec.strategy}**" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("charts/") for link in links)
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == sorted(Path(x).name for x in links)
    # the table alone: it ends where its legend or the next section starts
    end = min(i for i in (md.find("| Rows | Model | Pricing |"), md.find("## What each number measures")) if i > 0)
    table = md[md.index("## Comparison"):end]
    header, *rows = [line for line in table.splitlines() if line.startswith("| ")]
    pipes = len(re.findall(r"(?<!\\)\|", header))
    assert pipes == len(report.table_rows(results)[0]) + 1
    assert len(rows) == len(results.strategies)
    for row in rows:  # no stray pipe splits a cell
        assert len(re.findall(r"(?<!\\)\|", row)) == pipes, row
    assert sum("★" in row for row in rows) == (1 if rec.recommended else 0)
    legend = md[md.index("| Rows | Model | Pricing |"):md.index("## Charts")]
    for s in results.strategies:  # the model and its pricing are in the legend, not repeated in every row
        assert s.name in legend and s.model in legend
        assert not any(s.model in row for row in rows)


def recommending(results: Results, name: str) -> Results:
    """The same run as if its verdict had been a recommendation of `name` (the tiny run has 4 items: it has none)."""
    r = as_dict(results)
    r["recommendation"].update(status="recommended", strategy=name)
    return Results.model_validate(r)


def test_a_recommendation_marks_its_row_and_not_enough_evidence_marks_none(results, tmp_path):
    assert results.recommendation.status == "not enough evidence"  # 4 eval items
    assert results.recommendation.evidence.why.startswith("only 4 eval items")
    html, md = render(results, tmp_path)
    assert "Not enough evidence" in html and 'class="badge"' not in html
    name = results.strategies[1].name
    html, md = render(recommending(results, name), tmp_path)
    assert re.findall(r'<tr class="win"><td>([^<]+)<', html)[0] == name and 'class="badge">recommended' in html
    assert f"## Verdict: **{name}**" in md
    assert sum("★" in line for line in md[md.index("## Comparison"):md.index("| Rows |")].splitlines()) == 1


def money_case(results: Results, pick: str, payback_days: float | None) -> Results:
    """`pick` recommended at 3,000 requests/day over 365 days: $0.00033 a request against the baseline's $0.0011,
    $603.05 more set-up, $900 of running costs over the horizon ($75 a month)."""
    r = as_dict(results)
    base = r["economics"]["baseline"]
    r["assumptions"].update(requests_per_day=3000, horizon_days=365)
    r["recommendation"].update(status="recommended", strategy=pick)
    for s in r["strategies"]:
        if s["name"] in (pick, base):
            mine = s["name"] == pick
            s["economics"].update(cost_per_request=0.00033 if mine else 0.0011, setup_cost=603.05 if mine else 0.0,
                                  maintenance_cost=900.0 if mine else 0.0, payback_days=payback_days if mine else None)
    return Results.model_validate(r)


def test_the_verdict_block_carries_the_money(results, tmp_path):
    """The issue's case: 70% cheaper per request and never paying back were only far below the verdict."""
    base = results.economics.baseline
    pick = next(s.name for s in results.strategies if s.name != base)
    never = money_case(results, pick, None)
    # By hand: $0.00077 saved a request x 3,000 a day x 365/12 days = $70.26 a month, against $900 / 12 = $75.00.
    line = (f"Money: a request to {pick} costs $0.00033 against $0.0011 for {base} (70% cheaper); it never pays back: "
            "its extra running costs ($75.00/month) exceed what it saves ($70.26/month at 3,000 requests/day).")
    assert report.money_reason(never) == line
    html, md = render(never, tmp_path)
    verdict = html[html.index('id="verdict"'):html.index('id="comparison"')]
    assert verdict.index("<ol>") < verdict.index(line) < verdict.index("</ol>")  # among the top reasons
    assert report.md_text(line) in md[md.index("## Verdict"):md.index("## Comparison")]  # as Markdown escapes it
    paid = money_case(results, pick, 148.2)
    assert report.money_reason(paid).endswith(
        "(70% cheaper); its extra set-up ($603.05) is paid back on day 149 at 3,000 requests/day.")
    baseline = money_case(results, base, None)
    assert report.money_reason(baseline).endswith("it is the baseline, with no set-up to pay back.")


def test_long_tag_names_do_not_overlap_under_the_per_tag_chart(results):
    from advisor.charts import by_tag_figure

    names = ["billing_and_invoices", "returns-and-refunds-policy", "shipping times abroad", "account security",
             "warranty_claims_and_repairs", "smart-home-hub-setup", "thermostat_scheduling", "camera"]
    for tags in (names[:3], names, [f"{n}_{i}" for i in range(3) for n in names]):
        r = as_dict(results)
        for s in r["strategies"]:
            first = next(iter(s["by_tag"].values()))
            s["by_tag"] = {t: first for t in tags}
        fig = by_tag_figure(Results.model_validate(r))
        fig.tight_layout()
        fig.canvas.draw()
        ax = fig.axes[0]
        boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()), key=lambda b: b.x0)
        assert len(boxes) == len(tags)
        for a, b in zip(boxes, boxes[1:]):
            assert a.x1 <= b.x0, f"{len(tags)} tags: tick labels overlap ({a.x1:.0f} > {b.x0:.0f})"
        width, height = fig.canvas.get_width_height()
        assert all(b.x0 >= 0 and b.x1 <= width and b.y0 >= 0 for b in boxes), "a tag name is cut off"


def test_planted_script_is_text_in_html_and_markdown(results, tmp_path):
    html, md = render(plant(results), tmp_path)
    assert PLANT not in html and "<img src=x" not in html
    assert PLANT_ESCAPED in html
    assert html.count("<script") == 0
    assert PLANT not in md and "<script" not in md and "<img src=x" not in md
    assert "&lt;script&gt;" in md
    assert "\\[link\\](http://evil.test)" in md  # a model's link stays text
    assert not re.search(r"(?<!\\)\[link(?<!\\)\]", md)
    # Rendered as GitHub would (CommonMark + tables, raw HTML allowed): still no tag, link or image from data.
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script" not in rendered and "<img src=\"x\"" not in rendered and "<img src=x" not in rendered
    assert "evil.test\"" not in rendered and PLANT_ESCAPED in rendered
    assert rendered.count("<img ") == len(re.findall(r"!\[", md))  # only the charts
    # the planted question keeps its table rows intact: pipes escaped, newlines joined
    for line in md.splitlines():
        if "answer from" in line:
            assert line.startswith("| ") and line.endswith(" |")
            assert len(re.findall(r"(?<!\\)\|", line)) == 7, line


def test_the_report_says_what_each_number_measures(results, tmp_path):
    """Per tag the scoring method beside each row's accuracy there; grounding beside accuracy for retrieval rows."""
    html, md = render(results, tmp_path)
    section = md[md.index("## What each number measures"):md.index("## Charts")]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert "| contains |" in rows["knowledge"] and "| format |" in rows["style"]
    for s in results.strategies:
        assert report.fmt_pct(s.by_tag["style"]) in rows["style"]
    assert "**format**: the answer has the required form (not whether its content is right)" in section
    retrieving = [s for s in results.strategies if s.grounding is not None]
    assert {s.name for s in retrieving} == {"rag", "lora+rag"}
    for s in retrieving:
        line = next(line for line in section.splitlines() if line.startswith(f"| {s.name} | {report.fmt_pct(s.accuracy)}"))
        assert report.fmt_pct(s.grounding.context_recall, ci=False) in line
        assert report.fmt_pct(s.grounding.faithfulness, ci=False) in line
    assert 'id="grounding-table"' in html and 'id="tag-table"' in html and 'id="field-table"' not in html


def test_absent_values_render_as_dashes(results, tmp_path):
    """Whatever the schema lets be absent (None), empty, or not a number (NaN) shows as a dash."""
    r = as_dict(results)
    r["comparisons"], r["experiments"] = [], {}
    r["recommendation"]["sensitivity"], r["recommendation"]["sensitivity_text"] = [], []
    r["run"]["models"]["embedder"] = None
    nan = float("nan")
    s = r["strategies"][0]
    s["accuracy"] = {"mean": nan, "low": nan, "high": nan, "n": 0}
    s["latency"].update(p50_seconds=None, p95_seconds=None, n=0)
    s["consistency"].update(self_agreement=None, paraphrase_agreement=None)
    s["format_adherence"], s["retrieval"] = None, None
    s["economics"].update(roi=None, net_value=None, cost_per_request=nan)
    for other in r["strategies"]:
        other["setup"].pop("training", None)
    absent = Results.model_validate(r)
    html, md = render(absent, tmp_path)
    name = absent.strategies[0].name
    cells = re.search(rf"<tr[^>]*><td>{re.escape(name)}.*?</tr>", html).group(0)
    assert cells.count("–") >= 8, cells  # accuracy, agreements (2), format, $/1k, p50, p95, ROI
    assert "nothing within the volumes tried" in html and "nothing within the volumes tried" in md
    assert 'id="chart-training_loss"' not in html and 'id="experiments"' not in html
    section = html[html.index('id="comparisons"'):html.index('id="reasons"')]
    assert "<p>–</p>" in section
    assert "embedder model" not in md
    report.terminal(absent, Console(width=100, record=True, file=open(os.devnull, "w")))


def test_experiments_render(results, tmp_path):
    """The run's real experiments (freshness, forgetting) get a table and a chart; a data curve too."""
    assert results.experiments.freshness and results.experiments.forgetting
    r = as_dict(results)
    # A data curve needs several trainings; its rendering is checked on a hand-made curve of the real shape.
    r["experiments"]["data_curve"] = {"strategy": "lora", "points": [
        {"examples": n, "accuracy": {"mean": a, "low": a - 0.1, "high": a + 0.1, "n": 4}, "train_seconds": 1.0}
        for n, a in ((3, 0.2), (6, 0.4), (12, 0.5))]}
    html, md = render(Results.model_validate(r), tmp_path)
    for slug in ("experiment_freshness", "experiment_forgetting", "experiment_data_curve"):
        assert f'id="chart-{slug}"' in html, slug
        assert (tmp_path / "charts" / f"{slug}.png").exists(), slug
    assert "Freshness" in md and "Forgetting" in md and "How much data" in md
    # a later render without them removes their chart files
    del r["experiments"]["data_curve"]
    render(Results.model_validate(r), tmp_path)
    assert not (tmp_path / "charts" / "experiment_data_curve.png").exists()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_terminal_table_fits(results, width):
    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    report.terminal(results, console)
    text = console.export_text()
    assert "…" not in text
    for col in ("Strategy", "Acc (CI)", "Format", "Tokens", "$/1k req", "p50 s", "Total $"):
        assert col in text
    assert all(len(line) <= width for line in text.splitlines())
    rec = results.recommendation
    if rec.recommended:
        assert f"Recommendation: {rec.strategy}" in text
    else:
        assert f"Not enough evidence (leading: {rec.strategy}, not a recommendation)" in text
    for s in results.strategies:
        assert re.search(rf"^(★ )?{re.escape(s.name)}\s", text, flags=re.M), s.name


# ---------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(apt-get install chromium; .ci/run does)")


class Browser:
    """Headless Chromium driven over the DevTools protocol on fds 3/4 (--remote-debugging-pipe)."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()

        def wire():  # in the child: its fd 3 reads our commands, fd 4 carries its replies
            import fcntl

            a, b = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--disable-extensions", "--no-default-browser-check",
                f"--window-size={width},{height}", f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "about:blank"]
        self.log = open(profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     close_fds=False, preexec_fn=wire)
        os.close(to_r)
        os.close(from_w)
        self.out = os.fdopen(to_w, "wb", buffering=0)
        self.inbox: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.next_id = 0
        threading.Thread(target=self._read, args=(from_r,), daemon=True).start()

    def _read(self, fd: int) -> None:
        buf = b""
        with os.fdopen(fd, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for m in messages:
                    self.inbox.put(json.loads(m))
        self.inbox.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline, method)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        for m in self.events:
            if m.get("method") == event:
                return m
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline, event)
            self.events.append(m)
            if m.get("method") == event:
                return m

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                return
            if m is not None:
                self.events.append(m)

    def _next(self, deadline: float, what: str) -> dict:
        try:
            m = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no answer from Chromium waiting for {what}") from None
        if m is None:
            raise RuntimeError(f"Chromium exited (rc={self.proc.poll()}) waiting for {what}")
        return m

    def open(self, url: str) -> tuple[str, "callable"]:
        """A new page with network, console and log recording on; navigate and wait for load."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        self.drain(1.0)  # late console messages or requests

        def evaluate(expression: str):
            r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            if "exceptionDetails" in r:
                raise RuntimeError(r["exceptionDetails"])
            return r["result"].get("value")

        return session, evaluate

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.log.close()


@pytest.fixture
def browser(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    b = Browser(profile)
    yield b
    b.close()


def problems(b: Browser, page_url: str) -> tuple[list[str], list[str]]:
    """(console errors, requests to anything but the page itself or a data: URI)."""
    errors, requests = [], []
    for m in b.events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(json.dumps(p["exceptionDetails"])[:300])
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(json.dumps(p.get("args"))[:300])
        elif method == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            errors.append(f"{p['entry'].get('source')}: {p['entry'].get('text')}"[:300])
        elif method == "Page.javascriptDialogOpening":
            errors.append(f"dialog: {p.get('message')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if url != page_url and not url.startswith("data:"):
                requests.append(url)
    return errors, requests


VISIBLE = """(sel) => { const e = document.querySelector(sel); if (!e) return null;
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return {w: r.width, h: r.height, top: r.top, shown: s.display !== 'none' && s.visibility !== 'hidden'
          && s.opacity !== '0', text: e.innerText}; }"""


@needs_chromium
def test_report_opens_in_chromium(results, tmp_path, browser):
    render(results, tmp_path)
    url = (tmp_path / "report.html").resolve().as_uri()
    session, evaluate = browser.open(url)
    errors, requests = problems(browser, url)
    assert not errors, errors
    assert not requests, requests
    assert any(m.get("method") == "Network.requestWillBeSent" for m in browser.events)  # recording worked

    rec = results.recommendation.strategy
    verdict = evaluate(f"({VISIBLE})('#verdict')")
    assert "`" not in verdict["text"], "Markdown backticks in the HTML verdict"
    assert verdict and verdict["shown"] and verdict["w"] > 300 and verdict["h"] > 50
    assert 0 <= verdict["top"] < 900, "the verdict is on the first screen"
    assert rec in verdict["text"] and "What would change it" in verdict["text"]
    assert report.money_reason(results) in verdict["text"]  # the money, among the top reasons
    table = evaluate(f"({VISIBLE})('#comparison-table')")
    assert table and table["shown"] and table["w"] > 300
    rows = evaluate("[...document.querySelectorAll('#comparison-table tbody tr')].map(r => r.cells[0].innerText)")
    assert [r.replace("recommended", "").strip() for r in rows] == [s.name for s in results.strategies]
    win = evaluate("document.querySelector('#comparison-table tr.win td')?.innerText")
    assert win.startswith(rec) if results.recommendation.recommended else win is None
    assert_table_fits(evaluate)
    images = evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
    assert len(images) >= 5
    assert all(done and w > 100 and src == "data:image/png;base64," for done, w, src in images), images
    assert evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scroll"

    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
    path = tmp_path / "report-screenshot.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    full = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
    (tmp_path / "report-full.png").write_bytes(base64.b64decode(full["data"]))
    assert path.stat().st_size > 20_000
    print(f"screenshot: {path}")

    browser.send("Emulation.setEmulatedMedia", {"media": "print"}, session=session)
    assert evaluate("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    pdf = browser.send("Page.printToPDF", {}, session=session, timeout=60)
    assert base64.b64decode(pdf["data"]).startswith(b"%PDF")


def assert_table_fits(evaluate) -> None:
    """The comparison table fits the 1280 px window: its right edge and its last column's are inside the viewport,
    and nothing scrolls sideways inside its box."""
    right, last, width, scroll, box = evaluate(
        "(() => { const t = document.querySelector('#comparison-table'), c = t.querySelector('thead th:last-child');"
        " return [t.getBoundingClientRect().right, c.getBoundingClientRect().right, window.innerWidth,"
        " t.scrollWidth, t.parentElement.clientWidth]; })()")
    assert width == 1280 and right <= width and last <= width, f"table ends at {right} px, ROI at {last} px"
    assert scroll <= box, f"comparison table {scroll} px wide in a {box} px box"


def widest(results: Results) -> Results:
    """The support run's shape at its widest: six rows with long names, money in thousands, a payback day and an
    ROI in every row, the recommended badge on the longest name."""
    r = as_dict(results)
    template = r["strategies"][0]
    names = ["zero-shot", "few-shot", "rag", "few-shot+rag", "lora", "lora+rag"]
    families = ["prompting", "prompting", "rag", "rag", "finetune", "finetune+rag"]
    rows = []
    for i, (name, family) in enumerate(zip(names, families)):
        s = copy.deepcopy(template) | {"name": name, "family": family}
        s["accuracy"].update(mean=0.48, low=0.31, high=0.65)
        s["economics"] = s["economics"] | {"name": name, "cost_per_request": 0.0011, "setup_cost": 12345.67,
                                           "total_cost": 123456.78, "roi": 12.3, "payback_days": 1234.0}
        rows.append(s)
    r["strategies"] = rows
    for ex in r["examples"]:
        answer = next(iter(ex["answers"].values()))
        ex["answers"] = {n: answer for n in names}
    r["comparisons"], r["experiments"] = [], {}
    r["economics"]["baseline"] = "few-shot"
    r["recommendation"].update(status="recommended", strategy="few-shot+rag", baseline="few-shot",
                               contenders=names, ruled_out={})
    return Results.model_validate(r)


@needs_chromium
def test_the_widest_comparison_table_fits_1280_px(results, tmp_path, browser):
    render(widest(results), tmp_path)
    session, evaluate = browser.open((tmp_path / "report.html").resolve().as_uri())
    assert_table_fits(evaluate)
    cells = evaluate("[...document.querySelectorAll('#comparison-table tbody tr')].map(r => r.cells[r.cells.length"
                     " - 1].innerText)")
    assert cells == ["12.3x"] * 6  # the ROI column is there, whole, in every row
    evaluate("document.querySelector('#comparison').scrollIntoView()")
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
    path = tmp_path / "comparison-1280.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 20_000
    print(f"screenshot: {path}")


@needs_chromium
def test_planted_script_stays_text_in_chromium(results, tmp_path, browser):
    render(plant(results), tmp_path)
    url = (tmp_path / "report.html").resolve().as_uri()
    _, evaluate = browser.open(url)
    errors, requests = problems(browser, url)
    assert not errors, errors
    assert not requests, requests  # the planted <img src=x> did not load anything
    assert evaluate("document.scripts.length") == 0
    body = evaluate("document.body.innerText")
    assert PLANT in body and "<img src=x onerror=alert(2)>" in body
    assert evaluate("document.querySelectorAll('img:not(.chart)').length") == 0


@needs_chromium
def test_browser_check_sees_requests_and_errors(tmp_path, browser):
    """The recorder is not blind: a page that fetches from a host and logs an error is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><img src="http://example.invalid/x.png">'
                    '<script>console.error("boom")</script>')
    url = page.resolve().as_uri()
    browser.open(url)
    errors, requests = problems(browser, url)
    assert any("boom" in e for e in errors), errors
    assert "http://example.invalid/x.png" in requests


def test_the_verdict_states_its_fragility(results, tmp_path):
    """The verdict section of both reports and the terminal panel say how many item scores could overturn it."""
    r = as_dict(results)
    r["recommendation"]["fragility"] = {"count": 1, "changes": "status", "items": [
        {"id": "q1", "row": "few-shot", "from": 1.0, "to": 0.0}],
        "text": "One item decides this verdict: with few-shot's answer to q1 scored wrong instead of right, it "
                "would change from recommended: few-shot to not enough evidence."}
    fragile = Results.model_validate(r)
    page, md = render(fragile, tmp_path)
    assert "<b>Fragility:</b> One item decides this verdict" in page
    assert "**Fragility:** One item decides this verdict" in md
    assert md.index("**Fragility:**") < md.index("## Comparison")  # in the verdict section
    console = Console(record=True, width=120)
    report.terminal(fragile, console)
    assert "Fragility: One item decides this verdict" in " ".join(console.export_text().split())
