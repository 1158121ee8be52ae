"""A notebook executed cell by cell in a real Jupyter kernel (issue 8, item 3).

Functions defined in cells travel by value; each call must see the globals, closures and
definitions as they are at that moment, and ``parallelize.restart()`` must bring code reloaded
with ``importlib.reload`` to the workers. The kernel is a child of this process and its workers
are the kernel's children; the test checks that all of them are gone at the end, which the
per-test leak check (children of this process only) could not see.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import all_processes, pid_alive, wait_until

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

KERNEL_NAME = "parallelize-test"
STARTUP_TIMEOUT = 60
CELL_TIMEOUT = 60

pytestmark = pytest.mark.timeout(STARTUP_TIMEOUT + 12 * CELL_TIMEOUT)


def notebook_client(cells: list[Any], tmp_path: Path) -> Any:
    """A client for a notebook of ``cells`` on the test kernel (see ``kernel_env``), run in
    ``tmp_path``; the notebook tests of other modules use it too."""
    return nbclient.NotebookClient(
        nbformat.v4.new_notebook(cells=cells),
        timeout=CELL_TIMEOUT,
        startup_timeout=STARTUP_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},
    )


# (source, expected stdout): the notebook, and what each cell must print.
CELLS: list[tuple[str, str | None]] = [
    (
        "import importlib, os, sys\n"
        "import parallelize\n"
        "from parallelize import parallel\n"
        "sys.path.insert(0, HELPER_DIR)\n"
        "print(os.getpid())",
        None,  # the kernel's pid
    ),
    (
        "K = 1\n\n@parallel\ndef times_k(x):\n    return x * K\n\nprint(times_k(10).result(timeout=30))",
        "10\n",
    ),
    ("K = 2\nprint(times_k(10).result(timeout=30))", "20\n"),
    # every worker, not only the one that took the last call
    ("print(sorted({times_k(1).result(timeout=30) for _ in range(8)}))", "[2]\n"),
    (
        "@parallel\ndef times_k(x):\n    return x * K + 1\n\nprint(times_k(10).result(timeout=30))",
        "21\n",
    ),
    (
        "data = [1]\n\n@parallel\ndef total():\n    return sum(data)\n\n"
        "print(total().result(timeout=30))\n"
        "data.append(2)\n"
        "print(total().result(timeout=30))",
        "1\n3\n",
    ),
    (
        "def adder(n):\n    @parallel\n    def add(x):\n        return x + n\n    return add\n\n"
        "print(adder(1)(1).result(timeout=30), adder(5)(1).result(timeout=30))\n"
        "print(list(adder(10).map(range(3))))",
        "2 6\n[10, 11, 12]\n",
    ),
    (
        "with open(os.path.join(HELPER_DIR, 'helper.py'), 'w') as f:\n"
        "    f.write('def version():\\n    return 1\\n')\n"
        "import helper\n"
        "print(sorted({parallel(helper.version)().result(timeout=30) for _ in range(4)}))",
        "[1]\n",
    ),
    (
        "with open(os.path.join(HELPER_DIR, 'helper.py'), 'w') as f:\n"
        "    f.write('def version():\\n    return 22  # edited\\n')\n"
        "importlib.reload(helper)\n"
        "parallelize.restart()\n"
        "print(sorted({parallel(helper.version)().result(timeout=30) for _ in range(4)}))",
        "[22]\n",
    ),
    ("parallelize.shutdown()\nprint('down')", "down\n"),
]


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_method: str) -> None:
    """A kernelspec for this interpreter in a directory of our own, and the pool's settings."""
    prefix = tmp_path / "jupyter"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL_NAME],
        check=True,
        capture_output=True,
        timeout=STARTUP_TIMEOUT,
    )
    spec = json.loads((prefix / "share/jupyter/kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share/jupyter"))
    monkeypatch.setenv("PARALLELIZE_START_METHOD", start_method)
    monkeypatch.setenv("PARALLELIZE_WORKERS", "2")
    monkeypatch.delenv("PARALLELIZE_BACKEND", raising=False)


def _descendants(root: int) -> set[int]:
    parents = {pid: int(fields[1]) for pid, fields in all_processes()}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _stdout(cell: Any) -> str:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.mark.usefixtures("kernel_env")
def test_a_notebook_never_gets_stale_results(tmp_path: Path) -> None:
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    cells = [nbformat.v4.new_code_cell(f"HELPER_DIR = {str(helpers)!r}")]
    cells += [nbformat.v4.new_code_cell(source) for source, _ in CELLS]
    client = notebook_client(cells, tmp_path)
    left: set[int] = set()
    with client.setup_kernel():
        client.execute_cell(cells[0], 0)
        kernel = 0
        for index, (cell, (_, expected)) in enumerate(zip(cells[1:], CELLS, strict=True), start=1):
            client.execute_cell(cell, index)
            printed = _stdout(cell)
            if expected is None:
                kernel = int(printed)
            else:
                assert printed == expected, f"cell {index}:\n{cell.source}"
            if index == len(CELLS) - 1:  # the workers are up: remember the kernel's whole family
                left = _descendants(kernel)
        assert left, "the kernel should have started workers"
    assert kernel
    wait_until(
        lambda: not pid_alive(kernel) and not [pid for pid in left if pid_alive(pid)],
        30,
        "the kernel and its workers to exit",
    )
