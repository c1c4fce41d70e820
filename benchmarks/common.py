"""What every benchmark shares: a timer, the machine's state, and one way to print a table.

Each benchmark measures a baseline and the advisor's way in the same process run
and prints both with the ratio. On a shared CPU the absolute seconds move with the
load; the ratio moves much less, so the header records load and threads.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


class Timer:
    seconds: float = 0.0


@contextmanager
def timed():
    """`with timed() as t: ...` then `t.seconds`."""
    t = Timer()
    t0 = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - t0


def machine() -> str:
    """One line: date, cores, torch threads, load average (1/5/15 min)."""
    import torch

    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} threads {torch.get_num_threads()}, load avg {load}")


def speed() -> str:
    """One line: what this machine computes and copies now, for timings taken beside it.

    The machines here are VMs whose speed drifts: the same generation script took 5.5 s
    and 15.1 s twenty minutes apart with nothing else running (benchmarks/README.md).
    A figure is comparable to another only if the probe beside it is.
    """
    import torch

    def best(f, n=5):
        f()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    a = torch.randn(1024, 1024, dtype=torch.bfloat16)
    x = torch.ones(64 << 20, dtype=torch.uint8)
    y = torch.empty_like(x)
    flops = 2 * 1024**3 / best(lambda: a @ a)
    copy = 2 * x.numel() / best(lambda: y.copy_(x))
    return f"speed probe: bf16 matmul {flops / 1e9:.0f} GFLOP/s, memory copy {copy / 1e9:.1f} GB/s (read + write)"


def print_table(title: str, columns: list[str], rows: list[list], note: str = "") -> None:
    """A rich table on stdout (plain text when piped, so it pastes into the README)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*[fmt(x) for x in r])
    console = Console(width=160)
    console.print(table)
    if note:
        console.print(note)


def fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def fresh_cache(prefix: str) -> Path:
    """An empty ADVISOR_CACHE (nothing reused), except the converted base models of the cache in use before.

    De-quantizing the shipped GGUF (about 30 s of CPU) is not what these benchmarks measure
    (bench_model_load does), so its result is linked in; adapters, embeddings, indexes and
    generations start empty. Sets ADVISOR_CACHE and returns the folder.
    """
    import tempfile

    from advisor.cache import cache_dir

    before = cache_dir() / "models"
    fresh = Path(tempfile.mkdtemp(prefix=prefix))
    if before.is_dir():
        (fresh / "models").mkdir()
        for model in before.iterdir():
            if not model.name.startswith("."):  # not a conversion still under way (atomic_dir's temp folder)
                (fresh / "models" / model.name).symlink_to(model.resolve(), target_is_directory=True)
    os.environ["ADVISOR_CACHE"] = str(fresh)
    return fresh


def quiet() -> None:
    """Silence the libraries' progress bars and notices, as a run does."""
    from advisor.run import quiet_libraries

    quiet_libraries()
