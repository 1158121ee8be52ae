"""``progress=True`` in a real Jupyter kernel: the notebook bar when ipywidgets is importable, text
otherwise, and never an error (issue 11, "Progress"). The kernel set-up is test_notebook's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .test_notebook import CELL_TIMEOUT, STARTUP_TIMEOUT, kernel_env, notebook_client  # noqa: F401 - a fixture

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipywidgets")

pytestmark = pytest.mark.timeout(STARTUP_TIMEOUT + 6 * CELL_TIMEOUT)

SETUP = "import parallelize\nfrom parallelize import parallel\n\n@parallel\ndef cube(x):\n    return x ** 3\n"
WIDGET_BAR = "print(sum(cube.map(range(50), progress=True)))"
# A kernel whose ipywidgets cannot be imported (as where it is not installed): a text bar instead.
TEXT_BAR = (
    "import sys\n"
    "sys.modules['ipywidgets'] = None\n"
    "for name in [m for m in sys.modules if m.startswith('tqdm.notebook')]:\n"
    "    del sys.modules[name]\n"
    "print(sum(cube.map(range(30), progress=True)))"
)
DOWN = "parallelize.shutdown()"


def _errors(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == "error"]


def _stream(cell: Any, name: str) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


@pytest.mark.usefixtures("kernel_env")
def test_a_progress_bar_renders_in_a_notebook_cell(tmp_path: Path) -> None:
    cells = [nbformat.v4.new_code_cell(source) for source in (SETUP, WIDGET_BAR, TEXT_BAR, DOWN)]
    client = notebook_client(cells, tmp_path)
    notebook = client.nb
    client.execute()
    for cell in cells:
        assert not _errors(cell), _errors(cell)

    # ipywidgets is importable: tqdm's notebook bar, a widget displayed in the cell, whose last
    # state (kept in the notebook's widget state) reads 50/50; nothing on stderr.
    widget = cells[1]
    assert _stream(widget, "stdout") == f"{sum(x**3 for x in range(50))}\n"
    views = [o for o in widget.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, widget.outputs
    state = json.dumps(notebook.metadata.get("widgets", {}))
    assert "50/50" in state, state
    assert _stream(widget, "stderr") == ""

    # without ipywidgets: the text bar, on the cell's stderr, ending at 30/30
    text = cells[2]
    assert _stream(text, "stdout") == f"{sum(x**3 for x in range(30))}\n"
    assert "| 30/30 [" in _stream(text, "stderr").rsplit("\r", 1)[-1], text.outputs
    assert not [o for o in text.outputs if o.output_type == "display_data"]
