"""Command line: init, validate, run, train, report, roi, serve, export."""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from advisor.task import TaskError, load_task

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure prompting vs RAG vs LoRA fine-tuning on your task, and get a recommendation.")
err = Console(stderr=True, soft_wrap=True)  # error lines stay whole, for grep and logs
out = Console()


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise typer.Exit(2)


def _load(task: Path):
    try:
        return load_task(task)
    except TaskError as e:
        _fail(str(e))


@app.command()
def init(folder: Path = typer.Argument(..., help="new task folder to create")):
    """Scaffold a commented, valid example task."""
    if folder.exists() and any(folder.iterdir()):
        _fail(f"{folder} exists and is not empty; choose a new folder")
    src = resources.files("advisor") / "scaffold"
    folder.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file():
            (folder / item.name).write_bytes(item.read_bytes())
    out.print(f"created {folder}/ — edit task.yaml, then: advisor validate {folder}")


@app.command()
def validate(task: Path = typer.Argument(..., help="task folder or task.yaml")):
    """Check a task file and everything it names."""
    t = _load(task)
    out.print(f"[green]ok[/green] {t.name}: {len(t.train)} train, {len(t.eval)} eval, {len(t.documents)} documents, "
              f"instructions {len(t.instructions.split())} words")


@app.command()
def run(
    task: Path = typer.Argument(..., help="task folder or task.yaml"),
    out_dir: Path = typer.Option(Path("runs/latest"), "--out", help="where results and reports go"),
    strategies: Optional[list[str]] = typer.Option(None, "--strategy", "-s", help="run only these (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="overrides the task's seed"),
    freshness: bool = typer.Option(True, help="re-answer after the task's updated_documents replace the originals"),
    forgetting: bool = typer.Option(True, help="general-ability probe with and without each adapter"),
    data_curve: Optional[str] = typer.Option(None, help="fine-tune on growing train sizes, e.g. 25,50,100 (all is added)"),
):
    """Run every strategy on the task, score, cost, recommend, and write the report."""
    from advisor import harness, report
    from advisor.models import ModelError
    from strategies.base import ContextTooLong

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _fail("advisor run is one process; under accelerate launch or torchrun use `advisor train` "
              "(it trains the adapters on every process), then `advisor run` once to evaluate")
    t = _load(task)
    try:
        sizes = [int(x) for x in data_curve.split(",")] if data_curve else []
    except ValueError:
        _fail(f"--data-curve takes comma-separated numbers of examples, got {data_curve!r}")
    command = "advisor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    experiments = harness.Experiments(freshness=freshness, forgetting=forgetting, data_curve=sizes)
    try:
        results = harness.run(t, out_dir, strategies, seed, console=err, command=command, experiments=experiments)
    except (ModelError, harness.RunError, ContextTooLong) as e:
        _fail(str(e))
    report.terminal(results, out)
    out.print(f"wrote {out_dir}/results.json, examples.csv, report.md, report.html")


@app.command()
def train(
    task: Path = typer.Argument(..., help="task folder or task.yaml"),
    strategies: Optional[list[str]] = typer.Option(None, "--strategy", "-s", help="train only these rows (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="overrides the task's seed"),
):
    """Train the fine-tuning rows' adapters into the cache, on one process or several.

    Several GPUs: `accelerate launch --multi_gpu --num_processes N -m advisor.cli train TASK`
    (CPU processes: `torchrun --nproc_per_node N -m advisor.cli train TASK`), then
    `advisor run TASK` reuses the adapters and evaluates.
    """
    from advisor import harness
    from advisor.models import ModelError

    t = _load(task)
    main = int(os.environ.get("RANK", "0")) == 0
    if main:  # training progress (epochs, checkpoints, resume) on stderr, once
        harness.log_to(logging.StreamHandler(sys.stderr))
    try:
        trained = harness.train(t, strategies, seed)
    except (ModelError, harness.RunError) as e:
        _fail(str(e))
    if main:
        for name, m in trained.items():
            how = "reused from the cache" if m["reused"] else (
                f"trained in {m['train_seconds']:.1f} s, {m['tokens_per_second']:.0f} tokens/s, "
                f"{m.get('processes', 1)} process(es)")
            out.print(f"{name}: adapter {how}; best epoch {m['best_epoch']} of {m['epochs_run']}", highlight=False)
        out.print(f"next: advisor run {task} (reuses these adapters)")


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a finished run's folder")):
    """Re-render the reports from results.json without running any model."""
    from advisor import harness, report

    try:
        results = harness.load_results(run_dir)
    except harness.RunError as e:
        _fail(str(e))
    report.write_reports(results, run_dir)
    report.terminal(results, out)


@app.command()
def roi(
    run_dir: Path = typer.Argument(..., help="a finished run's folder"),
    requests_per_day: Optional[float] = typer.Option(None, min=0.001),
    horizon_days: Optional[float] = typer.Option(None, min=0.001),
    knowledge_changes_per_month: Optional[float] = typer.Option(None, min=0),
    input_price_per_mtok: Optional[float] = typer.Option(None, min=0),
    output_price_per_mtok: Optional[float] = typer.Option(None, min=0),
    hardware_price_per_hour: Optional[float] = typer.Option(None, min=0),
    write: bool = typer.Option(False, "--write", help="save the new economics into the run folder"),
):
    """Recompute economics and the recommendation under other assumptions, without running models."""
    from advisor import harness, report
    from advisor.task import EconomicsSpec

    try:
        results = harness.load_results(run_dir)
    except harness.RunError as e:
        _fail(str(e))
    changes = {k: v for k, v in dict(
        requests_per_day=requests_per_day, horizon_days=horizon_days,
        knowledge_changes_per_month=knowledge_changes_per_month, input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok, hardware_price_per_hour=hardware_price_per_hour,
    ).items() if v is not None}
    spec = EconomicsSpec.model_validate(results["assumptions"] | changes)
    results = harness.analyze(results, spec)
    if write:
        harness.write_outputs(results, run_dir)
    report.terminal(results, out)


@app.command()
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
):
    """Serve a run's strategy (or a plain model) as an OpenAI-compatible chat-completions API."""
    from advisor import serve as srv
    from advisor.models import ModelError

    def say(line: str) -> None:
        err.print(line, highlight=False)

    if (run_dir is None) == (model is None):
        _fail("give a run folder (advisor serve RUN_DIR [--strategy NAME]) or --model NAME, not both")
    if model is not None and strategy is not None:
        _fail("--strategy needs a run folder; --model serves the model as is")
    limits = srv.Limits(max_tokens=max_tokens_cap, max_batch=max_batch, max_wait_ms=batch_wait_ms, max_queue=max_queue)
    try:
        srv.check_exposure(host, api_key_env)  # before minutes of model loading
        if model is not None:
            say(f"loading {model} ...")
            served = srv.plain_model(model, model_name)
        else:
            served = srv.run_strategy(run_dir, strategy, model_name, say)
        srv.serve(served, host, port, api_key_env, say, limits)
    except (srv.ServeError, ModelError) as e:
        _fail(str(e))


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a finished run's folder"),
    out_dir: Path = typer.Argument(..., help="new folder for the export"),
    to: str = typer.Option(..., "--to", help="vllm: base model + peft adapter + chat template + `vllm serve` line; "
                                             "merged: the adapter merged into safetensors weights"),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="default: the run's recommended strategy"),
):
    """Export a run's strategy for a production engine (vLLM, TGI, or any engine that loads a model)."""
    from advisor import export as exp
    from advisor.models import ModelError

    try:
        exp.export(run_dir, strategy, to, out_dir, lambda line: err.print(line, highlight=False))
    except (exp.ExportError, ModelError) as e:
        _fail(str(e))


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
