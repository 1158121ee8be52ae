"""A worker's print and log record in a real Jupyter kernel land in the cell that made the call
(issue 11), not in whichever cell happens to run when they arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_notebook import CELL_TIMEOUT, STARTUP_TIMEOUT, kernel_env, notebook_client  # noqa: F401 - a fixture

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

pytestmark = pytest.mark.timeout(STARTUP_TIMEOUT + 4 * CELL_TIMEOUT)

SETUP = """
import logging, os, sys
from parallelize import parallel
logging.basicConfig(
    level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout, force=True
)

@parallel
def shout(x):
    print(f"printed {x} in", os.getpid())
    print(f"on stderr {x}", file=sys.stderr)
    logging.getLogger("cell").info("logged %d", x)
    return x
"""


def _streams(cell: object, name: str) -> str:
    outputs = cell.outputs  # type: ignore[attr-defined]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == name)


@pytest.mark.usefixtures("kernel_env")
def test_a_workers_print_appears_in_the_cell_that_made_the_call(tmp_path: Path) -> None:
    sources = [
        SETUP,
        "print('result', shout(1).result(timeout=30))",
        "print('result', shout(2).result(timeout=30))\nprint(sorted(shout.map(range(10, 13))))",
        "import parallelize\nparallelize.shutdown()",
    ]
    cells = [nbformat.v4.new_code_cell(source) for source in sources]
    client = notebook_client(cells, tmp_path)
    with client.setup_kernel():
        for index, cell in enumerate(cells):
            client.execute_cell(cell, index)
    first, second = _streams(cells[1], "stdout"), _streams(cells[2], "stdout")
    assert first.startswith("printed 1 in ")
    assert first.endswith("INFO cell logged 1\nresult 1\n")
    assert _streams(cells[1], "stderr") == "on stderr 1\n"
    assert "printed 1 in" not in second
    assert second.startswith("printed 2 in ")
    assert "INFO cell logged 2\nresult 2\n" in second
    for x in range(10, 13):
        assert f"printed {x} in " in second.split("result 2\n")[1]
    assert second.endswith("[10, 11, 12]\n")
    errors = sorted(_streams(cells[2], "stderr").splitlines())
    assert errors == ["on stderr 10", "on stderr 11", "on stderr 12", "on stderr 2"]
