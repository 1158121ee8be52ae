"""The benchmark runner keeps working: a smoke run in a fresh interpreter prints its report.

Nothing here looks at the figures (the machine is shared and noisy); only at the runner: it runs,
prints the header and a Markdown table with a value for every pool it could measure, and says
"n/a" for a peer that cannot be imported instead of crashing. CI installs only the dev extra, so
this must hold without loky, pebble, mpire or numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
ROUND_TRIP = "warm round trip, `submit(noop, x).result()`"


def run_benchmarks(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        check=False,
    )


def table_row(output: str, starts_with: str) -> dict[str, str]:
    """The cells of the table row whose label starts with ``starts_with``, by column title."""
    lines = output.splitlines()
    head = next(line for line in lines if line.startswith("| row "))
    row = next(line for line in lines if line.startswith(f"| {starts_with}"))
    titles = [cell.strip() for cell in head.strip("|").split("|")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(titles) == len(cells), row
    return dict(zip(titles, cells, strict=True))


@pytest.mark.timeout(120)
def test_smoke_run_prints_a_table_with_n_a_for_a_missing_peer(tmp_path: Path) -> None:
    # A "loky" that fails to import shadows any installed one: the runner must report it n/a.
    (tmp_path / "loky").mkdir()
    (tmp_path / "loky" / "__init__.py").write_text('raise ImportError("hidden by test_benchmarks")\n')

    done = run_benchmarks(
        "--smoke",
        "--rows",
        "roundtrip",
        "--pools",
        "parallelize,ProcessPoolExecutor,loky",
        extra_path=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"- command: `{sys.executable}" in out
    assert f"Python {sys.version.split()[0]}" in out
    default_method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    assert f"parallelize: {default_method}" in out
    cells = table_row(out, ROUND_TRIP)
    assert set(cells) == {
        "row",
        "parallelize",
        "ProcessPoolExecutor",
        "loky",
        "best peer",
        "parallelize / best peer",
    }
    assert float(cells["parallelize"].replace(",", "")) > 0
    assert float(cells["ProcessPoolExecutor"].replace(",", "")) > 0
    assert cells["loky"] == "n/a"
    assert cells["best peer"] == "ProcessPoolExecutor"
    assert "n/a: loky: not installed (hidden by test_benchmarks)" in out
    decorated = table_row(out, "warm round trip, `@parallel(pool=p)`")
    assert float(decorated["parallelize"].replace(",", "")) > 0
    assert decorated["ProcessPoolExecutor"] == "-"
    default = table_row(out, "warm round trip, plain `@parallel` function, default pool")
    assert float(default["parallelize"].replace(",", "")) > 0
    assert default["ProcessPoolExecutor"] == "-"
    # The default pool's row is shown next to the pool=p row it must match, with their ratio.
    side = out[out.index("### parallelize's forms side by side") :]
    pair = table_row(side, "warm round trip, plain `@parallel` function, default pool")
    assert pair["compared with"] == "warm round trip, `@parallel(pool=p)` function (µs)"
    assert float(pair["cost ratio"]) > 0


@pytest.mark.timeout(30)
def test_an_unknown_row_is_refused() -> None:
    done = run_benchmarks("--rows", "roundtrip,teleport")

    assert done.returncode != 0
    assert "unknown row 'teleport'" in done.stderr
    assert "| row " not in done.stdout


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip(" *"))


@pytest.mark.timeout(120)
def test_the_growth_rows_give_a_figure_for_every_pool_they_apply_to() -> None:
    done = run_benchmarks(
        "--smoke",
        "--rows",
        "threads,map,stream,big,pool",
        "--pools",
        "parallelize,ProcessPoolExecutor,bare pipe",
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in (
        "submit 160 no-ops from 4 threads",
        "p99 round trip, 16 threads",
        "map `x * 2` over 500 ints",
        "map over a 20,000-item generator: peak growth of the parent's RSS",
        "the same map over a generator",
    ):
        cells = table_row(out, label)
        assert number(cells["parallelize"]) >= 0, label
        assert number(cells["ProcessPoolExecutor"]) >= 0, label
    for size in (1, 2, 4):  # MiB in smoke mode; the bare pipe column sends the raw buffer
        cells = table_row(out, f"{size} MiB bytes argument, sizes in turn")
        assert all(number(cells[c]) > 0 for c in ("parallelize", "ProcessPoolExecutor", "bare pipe"))
        copy = table_row(out, f"copy {size} MiB into fresh memory")
        assert number(copy["bare pipe"]) > 0
        assert copy["parallelize"] == "-"
    uss = table_row(out, "USS of every process the pool started")
    assert all(number(uss[c]) > 0 for c in ("parallelize", "ProcessPoolExecutor", "bare pipe"))
    # The walk over /proc finds the whole tree: two workers and the forkserver they are forked from
    # (and multiprocessing's resource tracker, where the pool starts one).
    processes = table_row(out, "processes the pool started")
    assert number(processes["parallelize"]) >= 3
    assert number(processes["ProcessPoolExecutor"]) >= 3
    assert number(processes["bare pipe"]) >= 3


@pytest.mark.timeout(120)
def test_first_transfer_rows_are_measured_in_a_fresh_interpreter_for_each_pool() -> None:
    done = run_benchmarks("--smoke", "--rows", "transfer", "--pools", "parallelize,bare")

    assert done.returncode == 0, done.stderr
    for label in ("first 1 MiB bytes argument in a fresh pool", "first 1 MiB bytes result in a fresh pool"):
        cells = table_row(done.stdout, label)
        assert float(cells["parallelize"].replace(",", "")) > 0
        assert float(cells["bare pipe"].replace(",", "")) > 0
