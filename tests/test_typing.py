"""Types are part of the API: run mypy (strict, the project's own configuration) and basedpyright
so that a typing regression fails the test suite like any other bug.

The promises live in ``tests/typing/check_*.py``: ``assert_type`` for what must type-check and
``# type: ignore[code]`` for what must be rejected (strict mode reports an ignore that stopped
firing). mypy runs from the repository root, so ``pyproject.toml``'s ``[tool.mypy]`` applies, under
the interpreter running the tests, so each Python version is checked against its own typeshed.
basedpyright (``[tool.basedpyright]``) checks the same files, so both checkers must agree with the
promises; the rejections are mypy's to prove (see pyproject.toml).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pyproject.toml"

# A cold run (no .mypy_cache) takes seconds with compiled mypy, but can take minutes with a pure
# Python build on a busy 2-core machine; the cache makes reruns fast either way.
MYPY_TIMEOUT = 280
# basedpyright has no cache, but checks tests/typing in a few seconds.
PYRIGHT_TIMEOUT = 120


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
        f"{Path(result.args[0]).name} exited with {result.returncode}\n"
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


def run_basedpyright(*args: str) -> subprocess.CompletedProcess[str]:
    # The console script beside this interpreter: basedpyright's module entry point needs node
    # from its wheel, which the script finds.
    script = Path(sys.executable).with_name("basedpyright")
    return subprocess.run(
        [str(script), "--project", str(CONFIG), "--pythonpath", sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PYRIGHT_TIMEOUT,
        check=False,
    )


def pyright_errors(result: subprocess.CompletedProcess[str]) -> list[tuple[str, int, str]]:
    """(file, line, rule) of each error in basedpyright's JSON report."""
    diagnostics = json.loads(result.stdout)["generalDiagnostics"]
    return [
        (d["file"], d["range"]["start"]["line"] + 1, d.get("rule", ""))
        for d in diagnostics
        if d["severity"] == "error"
    ]


@pytest.mark.timeout(150)
def test_basedpyright_agrees() -> None:
    result = run_basedpyright("--outputjson")
    assert result.returncode == 0, report(result)
    summary = json.loads(result.stdout)["summary"]
    assert summary["filesAnalyzed"] >= 5, report(result)  # it found tests/typing
    assert (summary["errorCount"], summary["warningCount"]) == (0, 0), report(result)


@pytest.mark.timeout(150)
def test_basedpyright_harness_reports_type_errors(tmp_path: Path) -> None:
    """The same scratch file fails basedpyright, each deliberate error reported as an error: it
    resolved the package's real types (with an unresolved import there would be no
    reportArgumentType), and an assert_type mismatch is an error, not a warning. (The line-15
    ignore is not reported: unneeded ignores are mypy's to prove, see pyproject.toml.)"""
    scratch = tmp_path / "check_negative_control.py"
    scratch.write_text(NEGATIVE_CONTROL)
    result = run_basedpyright("--outputjson", str(scratch))
    assert result.returncode == 1, report(result)
    assert pyright_errors(result) == [
        (str(scratch), 12, "reportAssignmentType"),
        (str(scratch), 13, "reportAssertTypeFailure"),
        (str(scratch), 14, "reportArgumentType"),
    ], report(result)
