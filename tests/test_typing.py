"""Types are part of the API: run mypy (strict, the project's own configuration) so that a typing
regression fails the test suite like any other bug.

The promises live in ``tests/typing/check_*.py``: ``assert_type`` for what must type-check and
``# type: ignore[code]`` for what must be rejected (strict mode reports an ignore that stopped
firing). mypy runs from the repository root, so ``pyproject.toml``'s ``[tool.mypy]`` applies, under
the interpreter running the tests, so each Python version is checked against its own typeshed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pyproject.toml"

# A cold run (no .mypy_cache) takes seconds with compiled mypy, but can take minutes with a pure
# Python build on a busy 2-core machine; the cache makes reruns fast either way.
MYPY_TIMEOUT = 280


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"mypy exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )


@pytest.mark.timeout(300)
def test_typing_promises_hold() -> None:
    checks = sorted(path.name for path in (REPO / "tests" / "typing").glob("check_*.py"))
    assert len(checks) >= 3, f"expected the check_*.py files in tests/typing, found {checks}"
    result = run_mypy("tests/typing")
    assert result.returncode == 0, report(result)


@pytest.mark.timeout(300)
def test_whole_configured_file_set_type_checks() -> None:
    # With no paths, mypy checks `files` from [tool.mypy]: the package, the examples and the checks.
    result = run_mypy()
    assert result.returncode == 0, report(result)


NEGATIVE_CONTROL = """\
from typing_extensions import assert_type

from parallelize import Future, parallel


@parallel
def crunch(x: int) -> float:
    return x / 2


def wrong() -> None:
    text: str = 3
    assert_type(crunch(3), Future[str])
    crunch("3")
    fine: int = 3  # type: ignore[assignment]
    print(text, fine)
"""


@pytest.mark.timeout(300)
def test_harness_reports_type_errors(tmp_path: Path) -> None:
    """The harness can fail: deliberate errors in a scratch file are reported, each with its code.

    The parallelize errors prove mypy resolved the package's real types (an import it could not
    follow would be Any, and Any passes anything); the unused ignore proves warn_unused_ignores is
    on, which the rejections in tests/typing rely on.
    """
    scratch = tmp_path / "check_negative_control.py"
    scratch.write_text(NEGATIVE_CONTROL)
    # A cache of its own: the scratch module must not land in the repository's .mypy_cache.
    result = run_mypy("--cache-dir", str(tmp_path / "mypy_cache"), str(scratch))
    assert result.returncode == 1, report(result)
    found = [
        (int(line.split(":")[1]), line.rsplit(" ", 1)[-1])
        for line in result.stdout.splitlines()
        if line.startswith(str(scratch)) and ": error: " in line
    ]
    assert found == [
        (12, "[assignment]"),
        (13, "[assert-type]"),
        (14, "[arg-type]"),
        (15, "[unused-ignore]"),
    ], report(result)
