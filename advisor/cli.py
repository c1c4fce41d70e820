"""Command line: init, validate, run, train, report, review, roi, serve, export, history, compare, cache.

Exit codes (README "In CI"): 0 ok, 1 a gate failed, 2 bad input, 3 a model, endpoint,
tracker or hardware failure, 4 an internal error (a bug; the traceback is printed), 130
interrupted. Every command is wrapped by `exits`, the one place where exception types
become exit codes (`exit_code`), so `advisor ...`, `python -m advisor.cli` and a
CliRunner all see the same codes.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import shutil
import sys
import traceback
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from advisor import __version__
from advisor.budget import DEFAULT as DEFAULT_BUDGET, BudgetName
from advisor.task import SEED_LIMIT, TASK_FILE, TaskError, load_task

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_MODEL, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure prompting vs RAG vs LoRA fine-tuning on your task, and get a recommendation. "
                       "Exit codes: 0 ok, 1 a gate failed, 2 bad input, 3 model/endpoint/hardware failure, "
                       "4 internal error, 130 interrupted.")
err = Console(stderr=True, soft_wrap=True)  # error lines stay whole, for grep and logs
out = Console()


class InputError(Exception):
    """Bad input found by the CLI itself (an option, a folder)."""


# (module, exception class) per exit code. Only modules already imported are looked at: an exception of a
# class means its module was imported, and a failing command must not import torch just to name its error.
INPUT_ERRORS = [("advisor.compare", "CompareError"), ("advisor.export", "ExportError"),
                ("advisor.gates", "GateSpecError"), ("advisor.history", "HistoryError"), ("advisor.labels", "LabelError"),
                ("advisor.results", "ResultsError"), ("advisor.run", "RunError"), ("advisor.serve", "ServeError"),
                ("advisor.tracking", "TrackingError"), ("strategies", "StrategyError"),
                ("strategies.base", "ContextTooLong")]
MODEL_ERRORS = [("advisor.models", "ModelError"), ("advisor.tracking", "TrackerError"),
                ("torch", "OutOfMemoryError")]


def _loaded(classes: list[tuple[str, str]]) -> tuple[type, ...]:
    """The named exception classes whose modules are imported."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in classes)
    return tuple(cls for cls in found if cls is not None)


def exit_code(e: BaseException) -> int | None:
    """The exit code for a failure of this type; None for an unexpected one (a bug)."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, (InputError, TaskError) + _loaded(INPUT_ERRORS)):
        return EXIT_INPUT
    if isinstance(e, (MemoryError,) + _loaded(MODEL_ERRORS)):
        return EXIT_MODEL
    return None


def exits(command: Callable) -> Callable:
    """Run a command; a failure leaves as a one-line error and its exit code (a bug: traceback, exit 4)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except BaseException as e:
            code = exit_code(e)
            if code == EXIT_INTERRUPTED:
                err.print("[bold red]interrupted[/bold red]; run the same command again to resume from the cache")
            elif code is not None:
                # Messages quote task data (field names like documents[0], file text): never read as rich markup.
                err.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False)
            elif isinstance(e, Exception):
                traceback.print_exc()
                err.print(f"[bold red]internal error[/bold red] (a bug in advisor, exit {EXIT_BUG}): "
                          f"{type(e).__name__}: {e}", highlight=False)
                code = EXIT_BUG
            else:
                raise  # SystemExit and the like keep their own meaning
            raise typer.Exit(code) from None

    return run


def _fail(message: str) -> None:
    raise InputError(message)


def _version(value: bool) -> None:
    if value:
        out.print(f"advisor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Measure prompting vs RAG vs LoRA fine-tuning on your task, and get a recommendation."""


def _load(task: Path, strict: bool = False, embeddings: bool = False):
    """The validated task, or every problem in it printed at once (exit 2); also says what leaks."""
    from advisor import leakage
    from strategies import families  # the top layer hands the task loader the names it may accept

    try:
        t = load_task(task, strategies=families())
    except TaskError as e:
        if len(e.problems) == 1:
            _fail(str(e.problems[0]))
        err.print(f"[bold red]error:[/bold red] {len(e.problems)} problems in {task}; fix them all, then run again:",
                  highlight=False)
        for p in e.problems:
            err.print(f"  - {p}", highlight=False, markup=False)
        raise typer.Exit(EXIT_INPUT)
    for note in t.notices:
        err.print(f"note: {note}", highlight=False, markup=False)
    overlaps = leakage.check_task(t)
    how = f"normalised word 3-gram overlap >= {leakage.THRESHOLD}"
    if embeddings:
        from advisor.models import Embedder, ModelError

        try:
            embedder = Embedder(t.spec.models.embedder)
        except ModelError as e:
            _fail(str(e))
        seen = {(o.eval_id, o.train_id) for o in overlaps}
        overlaps += [o for o in leakage.find_similar(t.train, t.eval + t.eval_updated, embedder)
                     if (o.eval_id, o.train_id) not in seen]
        how += f", or embedding cosine >= {leakage.EMBEDDING_THRESHOLD}"
    if overlaps:
        say = "error" if strict else "warning"
        err.print(f"{say}: {len(overlaps)} eval item(s) repeat train items ({how}); "
                  "a model trained on them has seen the answers:", highlight=False, markup=False)
        for o in overlaps[:20]:
            err.print(f"  - {o}", highlight=False, markup=False)
        if len(overlaps) > 20:
            err.print(f"  ... and {len(overlaps) - 20} more", highlight=False)
        if strict:
            _fail("--strict refuses a task whose eval leaks into train; remove or rewrite those eval items")
    return t


def _warn_fit(t) -> None:
    """Say what would waste a run's minutes (too few eval items, a scoring method that cannot fit)."""
    from advisor import guess  # after the task loaded: bad input has failed without scipy's import

    for w in guess.warnings(t):
        err.print(f"warning: {w}", highlight=False, markup=False)


STRICT = typer.Option(False, "--strict", help="refuse (exit 2) when eval items duplicate train items")
SEED = typer.Option(None, min=0, max=SEED_LIMIT - 1, help="overrides the task's seed")
BUDGET = typer.Option(
    BudgetName(DEFAULT_BUDGET), "--budget",
    help="fast: the first run in minutes (the report says what it measured less deeply); full: every measurement "
         "at full depth. Either only fills settings the task file leaves unset")


@app.command()
@exits
def init(
    folder: Path = typer.Argument(..., help="new task folder to create"),
    from_file: Optional[Path] = typer.Option(None, "--from", help="build the task around this CSV, TSV, Parquet, "
                                             "JSONL file or save_to_disk folder (it is copied in)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="accept the guessed column mapping without asking"),
):
    """Scaffold a commented, valid example task (or one around your existing data with --from)."""
    if folder.exists() and any(folder.iterdir()):
        _fail(f"{folder} exists and is not empty; choose a new folder")
    if from_file is not None:
        _init_from(folder, from_file, yes)
        return
    src = resources.files("advisor") / "scaffold"
    folder.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file():
            (folder / item.name).write_bytes(item.read_bytes())
    out.print(f"created {folder}/ — edit task.yaml, then: advisor validate {folder}")


def _init_from(folder: Path, data: Path, yes: bool) -> None:
    """Guess what each column holds, let the person confirm or pick, and write a task that splits the data
    itself, with eval sized for a verdict and a scoring method that fits the answers (advisor/guess.py)."""
    import textwrap

    from advisor import guess, loaders
    from advisor.task import examples_from_rows

    if not data.exists():
        _fail(f"{data} does not exist")
    try:
        rows = loaders.read_rows(data.resolve())
    except loaders.LoadError as e:
        _fail(str(e) + (f" ({e.fix})" if e.fix else ""))
    if not rows:
        _fail(f"{data} has no rows")
    g = guess.guess_columns(rows)
    names = [c.name for c in g.columns]
    _show_columns(data, len(rows), g)
    complete = "messages" in g.mapping or {"input", "output"} <= set(g.mapping)
    mapping = dict(g.mapping)
    if yes:
        if not complete:
            _fail(f"cannot tell which columns hold the question and the answer in {data} (columns: {', '.join(names)}); "
                  "run without --yes to pick them, or write `columns: {input: ..., output: ...}` in task.yaml")
        out.print("--yes: took the guess above" + ("" if g.sure else " (the column names alone did not settle it: "
                                                   "check it, and change `columns:` in task.yaml if it is wrong)"),
                  highlight=False)
    elif not (complete and g.sure and typer.confirm("Use this mapping?", default=True)):
        mapping = _pick_columns(names, mapping)
    examples, problems, _ = examples_from_rows(rows, str(data), data.stem, True, mapping)
    if not examples:
        _fail(f"no usable rows with this mapping: {problems[0] if problems else 'no examples'}")
    held = guess.holdout(examples, seed=0)
    method, why = guess.choose_scoring(examples)
    err.print(("" if held.enough else "[bold yellow]warning:[/bold yellow] ") + escape(held.message), highlight=False)
    out.print(f"scoring: {method}, because {why}", highlight=False)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / data.name
    if data.is_dir():
        shutil.copytree(data, target)
    else:
        shutil.copyfile(data, target)

    def comment(text: str, indent: str = "") -> str:
        return textwrap.fill(text, 100, initial_indent=indent + "# ", subsequent_indent=indent + "# ")

    columns = ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items())
    (folder / "task.yaml").write_text(INIT_FROM_TEMPLATE.format(
        name=json.dumps(folder.name or "my-task"), data=json.dumps(data.name), columns=columns,
        instructions=INIT_CHAT_INSTRUCTIONS if "messages" in mapping else INIT_INSTRUCTIONS,
        fraction=held.fraction, holdout=comment(held.message), method=method,
        why=comment(f"Chosen by advisor init: {why}. Change it if it does not fit your answers.", "  ")),
        encoding="utf-8")
    try:
        t = load_task(folder)
    except TaskError as e:
        _fail(f"wrote {folder}/task.yaml, but it does not validate yet; edit it:\n" + str(e))
    for w in guess.warnings(t):
        err.print(f"warning: {w}", highlight=False, markup=False)
    out.print(f"created {folder}/ ({len(t.train)} train, {len(t.eval)} eval after the split) — edit task.yaml "
              f"(instructions, scoring, economics), then: advisor validate {folder}", highlight=False)


def _show_columns(data: Path, n_rows: int, g) -> None:
    """The file's columns with what they hold and a few values, then the guessed mapping with its reasons."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"{data}: {n_rows} rows", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("column", "holds", "first values"):
        t.add_column(col, overflow="fold")
    for c in g.columns:
        t.add_row(Text(c.name), Text(c.describe()), Text(" | ".join(c.examples)))
    out.print(t)
    if not g.mapping:
        out.print("no guess: no column's name or contents says what it holds", highlight=False)
        return
    out.print("guessed mapping (task field <- your column, and why):", highlight=False)
    for field_name, column in g.mapping.items():
        out.print(f"  {field_name:<12} <- {column}  ({g.reasons[field_name]})", highlight=False, markup=False)
    ignored = [c.name for c in g.columns if c.name not in g.mapping.values()]
    if ignored:
        out.print(f"  (ignored: {', '.join(ignored)})", highlight=False, markup=False)


def _pick_columns(names: list[str], guessed: dict[str, str]) -> dict[str, str]:
    """The person names the question, answer and tag columns (the guess is each prompt's default)."""
    import click

    none = "-"
    out.print("pick the columns (Enter keeps the value in brackets):", highlight=False)
    picked = {}
    for field_name, what in (("input", "the question (input)"), ("output", "the answer (output)"),
                             ("tags", f"tags, optional ({none}: none)")):
        choices = names + ([none] if field_name == "tags" else [])
        default = guessed.get(field_name, none if field_name == "tags" else None)
        value = click.prompt(f"column for {what}", default=default, type=click.Choice(choices))
        if value != none:
            picked[field_name] = value
    if picked["input"] == picked["output"]:
        _fail("the question and the answer must be different columns; nothing written")
    # keep the guessed id/answers/source columns the person was not asked about, unless now taken
    return picked | {f: c for f, c in guessed.items() if f not in ("input", "output", "tags", "messages")
                     and c not in picked.values()}


INIT_INSTRUCTIONS = """instructions: |
  Describe what the assistant does and how it answers (the prompting strategies send this on every request)."""
INIT_CHAT_INSTRUCTIONS = """# instructions: left out, so the chat rows' system message is used (set it to override)"""
INIT_FROM_TEMPLATE = """\
# A task around existing data (advisor init --from). Check it with: advisor validate FOLDER
# Every field is described in the commented example that `advisor init NEW_FOLDER` writes.
name: {name}
{instructions}

train: {data}        # one file: eval_fraction of it is held out as eval (seeded by `seed`, stratified by tag)
{holdout}
eval_fraction: {fraction}
columns: {{{columns}}}   # task field: your column (other columns are ignored)

scoring:
{why}
  method: {method}     # exact | contains | f1 | choice | regex | format | json_fields | semantic | judge
economics:
  requests_per_day: 1000
  knowledge_changes_per_month: 0
seed: 0
"""


@app.command()
@exits
def validate(
    task: Path = typer.Argument(..., help="task folder or task.yaml"),
    strict: bool = STRICT,
    embeddings: bool = typer.Option(False, help="also find eval items that reword train items (loads the embedder)"),
):
    """Check a task file and everything it names; every problem is reported at once."""
    t = _load(task, strict, embeddings)
    _warn_fit(t)
    out.print(f"[green]ok[/green] {t.name}: {len(t.train)} train, {len(t.eval)} eval, {len(t.documents)} documents, "
              f"instructions {len(t.instructions.split())} words")


@app.command()
@exits
def run(
    task: Path = typer.Argument(..., help="task folder or task.yaml"),
    out_dir: Path = typer.Option(Path("runs/latest"), "--out", help="where results and reports go"),
    strategies: Optional[list[str]] = typer.Option(None, "--strategy", "-s", help="run only these (repeatable)"),
    seed: Optional[int] = SEED,
    strict: bool = STRICT,
    freshness: bool = typer.Option(True, help="re-answer after the task's updated_documents replace the originals"),
    forgetting: bool = typer.Option(True, help="general-ability probe with and without each adapter"),
    data_curve: Optional[str] = typer.Option(None, help="fine-tune on growing train sizes, e.g. 25,50,100 (all is added)"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N eval items (smoke runs)"),
    fail_under: Optional[list[str]] = typer.Option(
        None, "--fail-under", help="gate: exit 1 if ROW's accuracy is below X, e.g. few-shot=0.70 (repeatable)"),
    expect: Optional[str] = typer.Option(None, help="gate: exit 1 unless the recommendation is this row"),
    max_cost_per_request: Optional[float] = typer.Option(
        None, min=0, help="gate: exit 1 if the recommended row costs more than this many USD per request"),
    gate: Optional[list[str]] = typer.Option(
        None, "--gate", help="gate: fragility>=N exits 1 if fewer than N item scores could overturn the verdict"),
    junit_xml: Optional[Path] = typer.Option(None, help="write the gates as JUnit test cases to this file"),
    history_file: Optional[Path] = typer.Option(
        None, "--history", help="run history store (default $ADVISOR_HISTORY or the user cache)"),
    no_history: bool = typer.Option(False, "--no-history", help="do not record this run in the history"),
    report_to: Optional[list[str]] = typer.Option(
        None, help="also log the run to an experiment tracker (repeatable): mlflow (at $MLFLOW_TRACKING_URI), "
                   "wandb (online with W&B credentials, else offline into OUT/wandb)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="estimate tokens, time and cost without running"),
    budget: BudgetName = BUDGET,
    max_items: Optional[int] = typer.Option(
        None, "--max-items", min=1, help="answer at most N eval items (whole clusters, in the run's seeded order)"),
    max_cost: Optional[float] = typer.Option(
        None, "--max-cost", min=0, help="stop answering before a round whose cost would pass this many USD on "
                                        "priced endpoints (local models count 0)"),
):
    """Run every strategy on the task, score, cost, recommend, and write the report.

    Under --budget fast (the default) the rows answer the eval items in rounds and a row significantly worse than
    another (anytime-valid test) stops answering; --budget full has every row answer every item.

    Exit codes: 0 ok, 1 a gate (--fail-under, --expect, --max-cost-per-request, --gate) failed,
    2 bad input, 3 model/endpoint/hardware failure, 4 internal error, 130 interrupted.
    """
    from advisor import gates as gating, history, tracking
    from advisor.estimate import estimate, first_estimate, summary_line, terminal as show_estimate
    from strategies import select_strategies

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _fail("advisor run is one process; under accelerate launch or torchrun use `advisor train` "
              "(it trains the adapters on every process), then `advisor run` once to evaluate")
    t = _load(task, strict)
    task_yaml = (task / TASK_FILE if task.is_dir() else task).read_text(encoding="utf-8")  # as this run read it
    if limit is not None:
        t.eval = t.eval[:limit]
    try:
        sizes = [int(x) for x in data_curve.split(",")] if data_curve else []
    except ValueError:
        _fail(f"--data-curve takes comma-separated numbers of examples, got {data_curve!r}")
    gates = gating.Gates(gating.parse_fail_under(fail_under or []), expect, max_cost_per_request,
                         gating.parse_gate(gate or []))
    chosen = select_strategies(t, strategies)
    rows = [c.name for c in chosen]
    gating.check_rows(gates, rows)
    tracking.check(report_to or [])
    if dry_run:
        _warn_fit(t)
        e = estimate(t, rows, history.history_path(history_file))
        if not any(r.measured for r in e.rows):  # no earlier run to scale: count tokens and probe this machine
            err.print("no earlier run of this task: loading the model to count tokens and probe the speed ...",
                      highlight=False)
            e = first_estimate(t, chosen, history.history_path(history_file))
        show_estimate(e, out)
        return
    # Only now the models (torch, transformers: seconds of imports): bad input above has failed at once.
    from advisor import report
    from advisor import run as runner

    # Before the long stages: from the last recorded run of this task, when there is one (each bar has its own ETA).
    err.print(summary_line(estimate(t, rows, history.history_path(history_file))), highlight=False)
    command = "advisor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    experiments = runner.Experiments(freshness=freshness, forgetting=forgetting, data_curve=sizes)
    seed = t.spec.seed if seed is None else seed
    results = runner.run(t, out_dir, seed, strategies, console=err, command=command, experiments=experiments,
                         budget=budget.value, max_items=max_items, max_cost=max_cost)
    report.terminal(results, out)
    out.print(f"wrote {out_dir}/results.json, examples.csv, report.md, report.html")

    checked = gating.evaluate(gates, results)
    run_id = None
    if not no_history:
        record = history.record_from_results(results, task_yaml, out_dir.resolve(), [asdict(g) for g in checked])
        path = history.history_path(history_file)
        run_id = history.record(path, record)
        out.print(f"recorded as run {run_id} in {path} (advisor history, advisor compare)", highlight=False)
    if junit_xml is not None:
        gating.write_junit(junit_xml, checked, t.name)
    for g in checked:
        out.print(f"{'[green]pass[/green]' if g.passed else '[bold red]FAIL[/bold red]'} {g.name}: {g.message}",
                  highlight=False)
    # Trackers last: one that fails (exit 3, naming it) finds every output above already written.
    settings = t.spec.model_dump(include={"generation", "prompting", "rag", "finetune", "consistency"})
    tracking.report(report_to or [], results, out_dir, settings, run_id,
                    lambda line: out.print(line, highlight=False, markup=False))
    if not all(g.passed for g in checked):
        raise typer.Exit(EXIT_GATE)


@app.command()
@exits
def train(
    task: Path = typer.Argument(..., help="task folder or task.yaml"),
    strategies: Optional[list[str]] = typer.Option(None, "--strategy", "-s", help="train only these rows (repeatable)"),
    seed: Optional[int] = SEED,
    budget: BudgetName = BUDGET,
):
    """Train the fine-tuning rows' adapters into the cache, on one process or several.

    Several GPUs: `accelerate launch --multi_gpu --num_processes N -m advisor.cli train TASK`
    (CPU processes: `torchrun --nproc_per_node N -m advisor.cli train TASK`), then
    `advisor run TASK` reuses the adapters and evaluates.
    """
    t = _load(task)
    from advisor import run as runner  # after the task is checked: a bad task fails without loading torch

    main = int(os.environ.get("RANK", "0")) == 0
    if main:  # training progress (epochs, checkpoints, resume) on stderr, once
        runner.log_to(logging.StreamHandler(sys.stderr))
    trained = runner.train(t, t.spec.seed if seed is None else seed, strategies, budget.value)
    if main:
        for name, m in trained.items():
            how = "reused from the cache" if m["reused"] else (
                f"trained in {m['train_seconds']:.1f} s, {m['tokens_per_second']:.0f} tokens/s, "
                f"{m.get('processes', 1)} process(es)")
            out.print(f"{name}: adapter {how}; best epoch {m['best_epoch']} of {m['epochs_run']}", highlight=False)
        out.print(f"next: advisor run {task} (reuses these adapters)")


@app.command("report")
@exits
def report_cmd(run_dir: Path = typer.Argument(..., help="a finished run's folder")):
    """Re-render the reports from results.json without running any model (re-decided with people's labels)."""
    from advisor import report, review
    from advisor.results import load_results

    results = load_results(run_dir)
    labels = review.current_labels(run_dir, results)
    if labels or results.review is not None:
        from advisor.run import write_outputs

        results = write_outputs(review.redecide(results, labels), run_dir)
    else:
        report.write_reports(results, run_dir)
    report.terminal(results, out)


@app.command("review")
@exits
def review_cmd(
    run_dir: Path = typer.Argument(..., help="a finished run's folder"),
    sample: Optional[int] = typer.Option(None, "--random", min=1, help="review every row's answer to N random eval "
                                         "items instead of the deciding ones (for prediction-powered accuracy)"),
    reviewer: Optional[str] = typer.Option(None, help="your name, kept with each label (default $USER)"),
    export_csv: Optional[Path] = typer.Option(None, "--export", help="write the labels to this CSV "
                                              "(id, row, label, reviewer, note) and stop"),
    import_csv: Optional[Path] = typer.Option(None, "--import", help="add the labels of this CSV (a later label of "
                                              "the same answer replaces the earlier) and re-decide"),
    to_human_scores: Optional[Path] = typer.Option(None, "--to-human-scores", help="write the labels as eval rows' "
                                                   "human_scores (JSONL, by id) for the judge's calibration, and stop"),
    history_file: Optional[Path] = typer.Option(None, "--history", help="default $ADVISOR_HISTORY or the user cache"),
):
    """Label the answers the verdict turns on (r right, w wrong, s skip, q quit), then re-decide with the labels.

    Every key is saved to RUN/labels.json at once; run it again to go on where you stopped."""
    from advisor import history, labels as store, report, review
    from advisor.cache import atomic_write_text
    from advisor.results import load_results

    results = load_results(run_dir)
    labels = review.current_labels(run_dir, results)
    if export_csv is not None or to_human_scores is not None:
        if export_csv is not None:
            atomic_write_text(export_csv, store.to_csv(labels))
            out.print(f"wrote {len(labels)} label(s) to {export_csv}", highlight=False)
        if to_human_scores is not None:
            n = review.write_human_scores(to_human_scores, results, labels)
            out.print(f"wrote {n} human score(s) to {to_human_scores}; add each row's human_scores to the eval row "
                      "with the same id", highlight=False)
        return
    data = results.model_dump(mode="json")
    if import_csv is not None:
        new = store.from_csv(import_csv, data)
        labels = store.merge(labels, new)
        store.save(run_dir, data, labels)
        out.print(f"imported {len(new)} label(s) from {import_csv}", highlight=False)
    else:
        queue = review.random_sample(results, sample) if sample else review.deciding(results)
        if not queue:
            out.print("nothing decides this verdict that a person should check (no discordant, near-threshold or "
                      "judged answers); --random N reviews a random sample", highlight=False)
            return
        labels = review.session(run_dir, results, queue, labels, reviewer or os.environ.get("USER", ""), out,
                                review.keyboard())
    if not labels:
        return
    from advisor.run import write_outputs

    results = write_outputs(review.redecide(results, labels), run_dir)
    out.print(report.review(results)["line"], highlight=False, soft_wrap=True)
    recorded = history.set_reviewed(history.history_path(history_file), run_dir, results.run.started,
                                    results.review.items if results.review else 0)
    if recorded is not None:
        out.print(f"history: run {recorded} now records {results.review.items} reviewed item(s)", highlight=False)


@app.command()
@exits
def roi(
    run_dir: Path = typer.Argument(..., help="a finished run's folder"),
    requests_per_day: Optional[float] = typer.Option(None, min=0.001),
    horizon_days: Optional[float] = typer.Option(None, min=0.001),
    knowledge_changes_per_month: Optional[float] = typer.Option(None, min=0),
    input_price_per_mtok: Optional[float] = typer.Option(None, min=0),
    output_price_per_mtok: Optional[float] = typer.Option(None, min=0),
    hardware_price_per_hour: Optional[float] = typer.Option(None, min=0),
    retrain_usd: Optional[float] = typer.Option(None, min=0, help="people cost of one retrain "
                                                "(economics.ownership.finetune.retrain_usd)"),
    value_per_correct: Optional[float] = typer.Option(None, min=0, help="$ a correct answer is worth: the verdict "
                                                      "maximises expected net value (README: How the verdict is "
                                                      "reached)"),
    cost_per_error: Optional[float] = typer.Option(None, min=0, help="$ a wrong answer costs"),
    loss_tolerance: Optional[float] = typer.Option(None, min=0.0001, max=0.999, help="with prices: the expected "
                                                   "loss a pick may carry, a share of the money at stake "
                                                   "(economics.loss_tolerance; 0.01 = one accuracy point's worth)"),
    unpriced: bool = typer.Option(False, "--unpriced", help="drop the task's value_per_correct and cost_per_error: "
                                                            "the margin rule decides"),
    margin: Optional[float] = typer.Option(None, min=0.001, max=0.999, help="non-inferiority margin of the rule "
                                           "without prices, a share (decision.margin; 0.10 = 10 points)"),
    write: bool = typer.Option(False, "--write", help="save the new economics into the run folder"),
):
    """Recompute economics and the recommendation under other assumptions, without running models."""
    from pydantic import ValidationError

    from advisor import report
    from advisor import run as runner
    from advisor.results import load_results
    from advisor.task import EconomicsSpec

    results = load_results(run_dir)
    changes = {k: v for k, v in dict(
        requests_per_day=requests_per_day, horizon_days=horizon_days,
        knowledge_changes_per_month=knowledge_changes_per_month, input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok, hardware_price_per_hour=hardware_price_per_hour,
    ).items() if v is not None}
    if unpriced and (value_per_correct is not None or cost_per_error is not None):
        _fail("--unpriced drops the prices; give it without --value-per-correct / --cost-per-error")
    if unpriced:
        changes |= {"value_per_correct": None, "cost_per_error": None}
    changes |= {k: v for k, v in dict(value_per_correct=value_per_correct, cost_per_error=cost_per_error,
                                      loss_tolerance=loss_tolerance).items() if v is not None}
    if margin is not None:
        results = results.model_copy(update={"decision": results.decision.model_copy(update={"margin": margin})})
    if retrain_usd is not None:
        ownership = results.assumptions.model_dump()["ownership"]
        changes["ownership"] = ownership | {"finetune": ownership.get("finetune", {}) | {"retrain_usd": retrain_usd}}
    try:
        spec = EconomicsSpec.model_validate(results.assumptions.model_dump() | changes)
    except ValidationError as e:  # e.g. --requests-per-day inf
        _fail("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))
    from advisor import review

    results = review.redecide(results, review.current_labels(run_dir, results), spec)  # people's labels count
    if write:
        runner.write_outputs(results, run_dir)
    report.terminal(results, out)


@app.command()
@exits
def serve(
    run_dir: Optional[Path] = typer.Argument(None, help="a finished run's folder (or use --model)"),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="default: the run's recommended strategy"),
    model: Optional[str] = typer.Option(None, help="serve a plain model instead of a run: embedded, an HF id or folder"),
    model_name: Optional[str] = typer.Option(None, help="the model id clients send (default: the strategy or model)"),
    host: str = typer.Option("127.0.0.1", help="interface to bind; the default is this machine only"),
    port: int = typer.Option(8000, min=1, max=65535),
    api_key_env: Optional[str] = typer.Option(None, help="require `Authorization: Bearer $NAME` from clients "
                                                          "(needed with a --host other than loopback)"),
    max_tokens_cap: int = typer.Option(1024, min=1, help="the most tokens one request may ask for"),
    max_batch: int = typer.Option(32, min=1, help="requests generated together in one batch"),
    batch_wait_ms: float = typer.Option(5.0, min=0, help="how long a batch waits for more requests to join"),
    max_queue: int = typer.Option(256, min=1, help="requests waiting beyond this get 503 (retry later)"),
    queue_timeout: float = typer.Option(60.0, min=0.001, help="seconds a request may wait for a place in the batch "
                                                               "before it gets 503 with Retry-After"),
    generation_timeout: float = typer.Option(300.0, min=0.001, help="seconds a request may generate before it "
                                                                     "gets 504"),
):
    """Serve a run's strategy (or a plain model) as an OpenAI-compatible chat-completions API."""
    from advisor import serve as srv

    def say(line: str) -> None:
        err.print(line, highlight=False)

    if (run_dir is None) == (model is None):
        _fail("give a run folder (advisor serve RUN_DIR [--strategy NAME]) or --model NAME, not both")
    if model is not None and strategy is not None:
        _fail("--strategy needs a run folder; --model serves the model as is")
    limits = srv.Limits(max_tokens=max_tokens_cap, max_batch=max_batch, max_wait_ms=batch_wait_ms, max_queue=max_queue,
                        queue_timeout_s=queue_timeout, generation_timeout_s=generation_timeout)
    srv.check_exposure(host, api_key_env)  # before minutes of model loading
    if model is not None:
        say(f"loading {model} ...")
        served = srv.plain_model(model, model_name)
    else:
        served = srv.run_strategy(run_dir, strategy, model_name, say)
    srv.serve(served, host, port, api_key_env, say, limits)


@app.command()
@exits
def export(
    run_dir: Path = typer.Argument(..., help="a finished run's folder"),
    out_dir: Path = typer.Argument(..., help="new folder for the export"),
    to: str = typer.Option(..., "--to", help="vllm: base model + peft adapter + chat template + `vllm serve` line; "
                                             "merged: the adapter merged into safetensors weights"),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="default: the run's recommended strategy"),
):
    """Export a run's strategy for a production engine (vLLM, TGI, or any engine that loads a model)."""
    from advisor import export as exp

    exp.export(run_dir, strategy, to, out_dir, lambda line: err.print(line, highlight=False))


@app.command("history")
@exits
def history_cmd(
    task: Optional[str] = typer.Argument(None, help="only runs of this task (its name)"),
    history_file: Optional[Path] = typer.Option(None, "--history", help="default $ADVISOR_HISTORY or the user cache"),
    wide: bool = typer.Option(False, "--wide", help="every field whole (model names too), however long the lines"),
    as_json: bool = typer.Option(False, "--json", help="the runs as a JSON array, for scripts"),
    as_csv: bool = typer.Option(False, "--csv", help="the runs as CSV, one line per run"),
    delete: Optional[list[int]] = typer.Option(None, "--delete", help="delete this run (repeatable)"),
    prune: bool = typer.Option(False, "--prune", help="delete all but the newest --keep runs of each task"),
    keep: Optional[int] = typer.Option(None, "--keep", min=0, help="with --prune: runs to keep per task"),
    yes: bool = typer.Option(False, "--yes", "-y", help="delete without asking"),
):
    """List recorded runs (when, task, models, seed, verdict, best accuracy, cost per request); delete or prune them."""
    from advisor import history

    path = history.history_path(history_file)
    if as_json and as_csv:
        _fail("--json and --csv: choose one")
    if prune != (keep is not None):
        _fail("--prune needs --keep N (runs to keep per task), and --keep goes with --prune")
    if delete or prune:
        _delete_runs(path, task, delete or [], keep if prune else None, yes)
        return
    runs = history.list_runs(path, task)
    if as_json:
        typer.echo(json.dumps([history.summary(r) for r in runs], indent=2))
    elif as_csv:
        typer.echo(history.to_csv(runs), nl=False)
    elif not runs:
        out.print(f"no runs recorded in {path}" + (f" for task {task!r}" if task else ""), highlight=False)
    else:
        history.terminal(runs, out, f"advisor history: {path}", wide)


def _delete_runs(path: Path, task: str | None, ids: list[int], keep: int | None, yes: bool) -> None:
    """--delete ID / --prune --keep N: list what goes, ask (unless --yes), delete in one transaction."""
    from advisor import history

    if keep is not None:
        doomed = history.to_prune(history.list_runs(path, task), keep)
        if not doomed:
            out.print(f"nothing to prune: no task has more than {keep} runs in {path}", highlight=False)
            return
    else:
        doomed = [history.get_run(path, i) for i in ids]
    history.require_writable(path)  # before asking
    history.terminal(doomed, out, f"to delete from {path}:")
    if not yes and not typer.confirm(f"delete these {len(doomed)} runs?"):
        out.print("nothing deleted", highlight=False)
        return
    history.delete(path, [r.id for r in doomed])
    out.print(f"deleted {len(doomed)} run{'s' if len(doomed) != 1 else ''} from {path}", highlight=False)


@app.command("compare")
@exits
def compare_cmd(
    a: str = typer.Argument(..., help="run id (advisor history) or run folder"),
    b: str = typer.Argument(..., help="run id (advisor history) or run folder"),
    html_out: Optional[Path] = typer.Option(None, "--html", help="also write a self-contained HTML page here"),
    history_file: Optional[Path] = typer.Option(None, "--history", help="default $ADVISOR_HISTORY or the user cache"),
    fail_on_verdict_change: bool = typer.Option(
        False, "--fail-on-verdict-change",
        help="a gate: exit 1 when the verdict changed, its row or its status (recommended / not enough evidence)"),
):
    """What changed between two runs, per-row paired accuracy deltas, cost deltas and the verdict."""
    from advisor import compare, history
    from advisor.cache import atomic_write_text

    path = history.history_path(history_file)
    (ra, la), (rb, lb) = compare.load(a, path), compare.load(b, path)
    c = compare.compare(ra, rb, la, lb)
    compare.terminal(c, out)
    if html_out is not None:
        atomic_write_text(html_out, compare.html(c))
        out.print(f"wrote {html_out}", highlight=False)
    if fail_on_verdict_change and c.verdict_changed:
        err.print(f"FAIL --fail-on-verdict-change: {compare.verdict_line(c)}", highlight=False)
        raise typer.Exit(EXIT_GATE)


cache_app = typer.Typer(no_args_is_help=True, help="The user cache: converted weights, embeddings, indexes, "
                                                    "adapters, generations ($ADVISOR_CACHE overrides).")
app.add_typer(cache_app, name="cache")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@cache_app.command("info")
@exits
def cache_info():
    """Where the cache is and what takes space in it."""
    from advisor.cache import cache_dir

    root = cache_dir()
    entries = sorted(((_size(p), p.name) for p in root.iterdir()), reverse=True)
    out.print(f"{root}: {sum(n for n, _ in entries) / 2**20:.1f} MiB", highlight=False)
    for n, name in entries:
        out.print(f"  {n / 2**20:10.1f} MiB  {name}", highlight=False)


@cache_app.command("clear")
@exits
def cache_clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
    include_history: bool = typer.Option(False, help="also delete the run history kept in the cache"),
):
    """Delete everything the cache holds (it is rebuilt on the next run); the run history stays unless asked."""
    from advisor import history
    from advisor.cache import cache_dir

    root = cache_dir()
    keep = set() if include_history else {history.FILE, f"{history.FILE}-wal", f"{history.FILE}-shm"}
    doomed = [p for p in root.iterdir() if p.name not in keep]
    size = sum(_size(p) for p in doomed) / 2**20
    if not yes and not typer.confirm(f"delete {len(doomed)} entries ({size:.1f} MiB) in {root}?"):
        raise typer.Exit(EXIT_OK)
    for p in doomed:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    out.print(f"deleted {size:.1f} MiB from {root}" + ("" if include_history else "; the run history is kept"),
              highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
