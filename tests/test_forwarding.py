"""Worker logging and output, forwarded to the parent (issue 11).

A worker's records are handled by the parent's logger of the same name (its levels, filters and
handlers), and what a task prints is written to the parent's current sys.stdout / sys.stderr
before the task's future settles. Every backend must behave alike: the process backend under
each start method, and the thread and sync backends, which run in this process anyway.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.config
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import parallelize
from parallelize import Pool, parallel

from . import forward_tasks, lifecycle_tasks
from .conftest import START_METHODS

RESULT_TIMEOUT = 30
SCRIPT_TIMEOUT = 60

pytestmark = pytest.mark.timeout(SCRIPT_TIMEOUT + 15)

# Where a decorated function runs: a process pool under each start method, or a thread / sync backend.
WHERE = [*START_METHODS, "thread", "sync"]


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest) -> str:
    if request.param in START_METHODS:
        parallelize.configure(start_method=request.param, workers=2)
    return str(request.param)


def _decorate(where: str, function: Callable[..., Any]) -> Any:
    """``@parallel`` as users write it: the default pool, or the backend named."""
    if where in START_METHODS:
        return parallel(function)
    return parallel(backend=where)(function)


@pytest.fixture
def task_logger() -> Iterator[logging.Logger]:
    """The tasks' logger; its level, the root's and their handlers are put back afterwards."""
    log = forward_tasks.log
    root = logging.getLogger()
    saved = log.level, root.level, list(log.handlers), log.propagate
    try:
        yield log
    finally:
        log.setLevel(saved[0])
        root.setLevel(saved[1])
        log.handlers[:] = saved[2]
        log.propagate = saved[3]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- output ---------------------------------------------------------------------------------------


def test_output_reaches_the_parents_current_streams_before_the_future_settles(where: str) -> None:
    chatter = _decorate(where, forward_tasks.chatter)
    chatter(0).result(timeout=RESULT_TIMEOUT)  # the pool is up before sys.stdout is replaced
    both = io.StringIO()
    at_settle: list[str] = []
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):
        future = chatter(3)
        future.add_done_callback(lambda _: at_settle.append(both.getvalue()))
        assert future.result(timeout=RESULT_TIMEOUT) == 3
    expected = "out 3 a\nerr 3\nout 3 b\npartial 3"
    assert at_settle == [expected]
    assert both.getvalue() == expected


def test_stdout_and_stderr_stay_apart(where: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _decorate(where, forward_tasks.chatter)(4).result(timeout=RESULT_TIMEOUT)
    assert out.getvalue() == "out 4 a\nout 4 b\npartial 4"
    assert err.getvalue() == "err 4\n"


def test_a_map_forwards_every_items_output_before_it_yields(where: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    chatter = _decorate(where, forward_tasks.chatter)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for x in chatter.map(range(30), chunksize=4):
            assert f"out {x} b\n" in out.getvalue()
    text = out.getvalue()
    # Each item's lines in order. Chunks run at once on both workers, so their output arrives in
    # the order they finish, and "partial 1" alone would also match "partial 10" of a chunk that
    # finished before the first one: the number ends where the next item's "out" begins.
    for x in range(30):
        partial = re.search(rf"partial {x}(?!\d)", text)
        assert partial is not None, text
        assert text.index(f"out {x} a\n") < text.index(f"out {x} b\n") < partial.start()
    assert sorted(err.getvalue().splitlines()) == sorted(f"err {x}" for x in range(30))


def test_pytest_capture_gets_a_workers_print(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    _decorate(where, forward_tasks.chatter)(5).result(timeout=RESULT_TIMEOUT)
    captured = capsys.readouterr()
    assert captured.out == "out 5 a\nout 5 b\npartial 5"
    assert captured.err == "err 5\n"


def test_an_initializers_output_is_forwarded_too(start_method: str) -> None:
    out = io.StringIO()
    pool = Pool(1, start_method=start_method, initializer=forward_tasks.greet)
    with contextlib.redirect_stdout(out), pool as p:
        pid = p.submit(forward_tasks.getpid).result(timeout=RESULT_TIMEOUT)
        # READY comes after the initializer's output, and the first result after READY
        assert out.getvalue() == f"hello from {pid}\n"


# -- logging --------------------------------------------------------------------------------------


def test_records_are_handled_by_the_parents_logger(where: str, task_logger: logging.Logger) -> None:
    task_logger.setLevel(logging.INFO)
    task_logger.propagate = False
    collect = _Collect()
    task_logger.addHandler(collect)
    pid = _decorate(where, forward_tasks.log_all)(5).result(timeout=RESULT_TIMEOUT)
    messages = [record.getMessage() for record in collect.records]
    assert messages == ["info 5", "warning 5", "failed 5"]
    for record in collect.records:
        assert record.name == "tests.forward_tasks"
        assert record.process == pid
    failed = collect.records[-1]
    text = logging.Formatter().format(failed)
    assert "Traceback (most recent call last)" in text
    assert "ValueError: bad 5" in text
    if where in START_METHODS:
        assert pid != os.getpid()
        assert failed.exc_info is None  # it arrived formatted: the traceback object stayed there
        assert all(r.processName.startswith("parallelize-worker-") for r in collect.records)
        assert all(getattr(r, "taskName", None) == "tests.forward_tasks.log_all(5)" for r in collect.records)


def test_a_filter_on_the_parents_logger_applies(where: str, task_logger: logging.Logger) -> None:
    task_logger.setLevel(logging.DEBUG)
    task_logger.propagate = False
    collect = _Collect()
    task_logger.addHandler(collect)
    task_logger.addFilter(only_warnings := _OnlyWarnings())
    try:
        _decorate(where, forward_tasks.log_all)(6).result(timeout=RESULT_TIMEOUT)
    finally:
        task_logger.removeFilter(only_warnings)
    assert [record.getMessage() for record in collect.records] == ["warning 6"]


class _OnlyWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno == logging.WARNING


def test_workers_follow_the_parents_levels_as_they_change(pool: Pool, task_logger: logging.Logger) -> None:
    """A record the parent would drop is never made in the worker, however the levels change."""
    root, log = logging.getLogger(), task_logger

    def seen() -> set[tuple[bool, bool, bool]]:
        futures = [pool.submit(forward_tasks.enabled) for _ in range(8)]  # both workers
        return {future.result(timeout=RESULT_TIMEOUT) for future in futures}

    task_logger.setLevel(logging.DEBUG)
    assert seen() == {(True, True, True)}
    task_logger.setLevel(logging.WARNING)
    assert seen() == {(False, False, True)}
    task_logger.setLevel(logging.NOTSET)
    root.setLevel(logging.INFO)
    assert seen() == {(False, True, True)}
    logging.disable(logging.INFO)
    try:
        assert seen() == {(False, False, True)}
    finally:
        logging.disable(logging.NOTSET)
    assert seen() == {(False, True, True)}
    logging.config.dictConfig({"version": 1, "incremental": True, "loggers": {log.name: {"level": "ERROR"}}})
    assert seen() == {(False, False, False)}


def test_a_forked_worker_forwards_rather_than_run_the_parents_handlers(task_logger: logging.Logger) -> None:
    """fork copies the parent's handlers into the worker: they are dropped there, so each record
    is handled once, by the parent (not also by a copy writing to the same file or terminal)."""
    task_logger.setLevel(logging.INFO)
    task_logger.propagate = False
    collect = _Collect()
    task_logger.addHandler(collect)
    with Pool(1, start_method="fork") as p:
        pid = p.submit(forward_tasks.log_all, 8).result(timeout=RESULT_TIMEOUT)
    assert [record.getMessage() for record in collect.records] == ["info 8", "warning 8", "failed 8"]
    assert all(record.process == pid for record in collect.records)


# -- the path users take: a script ----------------------------------------------------------------

SCRIPT = """
import logging
import logging.config
import os
import sys

from parallelize import parallel

log = logging.getLogger("app.work")


@parallel
def work(x):
    log.debug("hidden debug %d", x)
    log.info("visible info %d", x)
    log.info("secret %d", x)
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed %d", x)
    print("printed", x)
    return os.getpid()


class NoSecrets(logging.Filter):
    def filter(self, record):
        return "secret" not in record.getMessage()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s|%(name)s|%(process)d|%(processName)s|%(message)s"
    )
    log.addFilter(NoSecrets())
    extra = logging.StreamHandler(sys.stdout)
    extra.setFormatter(logging.Formatter("extra handler: %(message)s"))
    log.addHandler(extra)
    print("worker", work(7).result(timeout=30))
    print("parent", os.getpid())
"""


def test_a_script_sees_its_workers_records_formatted_by_its_config(tmp_path: Path, start_method: str) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    done = lifecycle_tasks.run_script(["script.py"], start_method, tmp_path, timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    worker = int(re.findall(r"^worker (\d+)$", done.stdout, re.MULTILINE)[0])
    parent = int(re.findall(r"^parent (\d+)$", done.stdout, re.MULTILINE)[0])
    assert worker != parent
    head = f"|app.work|{worker}|parallelize-worker-"
    lines = done.stderr.splitlines()
    info = [line for line in lines if line.startswith("INFO" + head)]
    assert len(info) == 1, done.stderr
    assert info[0].endswith("|visible info 7")
    error = [i for i, line in enumerate(lines) if line.startswith("ERROR" + head)]
    assert len(error) == 1, done.stderr
    assert lines[error[0]].endswith("|failed 7")
    assert lines[error[0] + 1] == "Traceback (most recent call last):"
    assert "ZeroDivisionError: division by zero" in lines[error[0] + 2 :]
    assert "debug" not in done.stderr + done.stdout
    assert "secret" not in done.stderr + done.stdout
    assert re.findall(r"^extra handler: .*$", done.stdout, re.MULTILINE) == [
        "extra handler: visible info 7",
        "extra handler: failed 7",
    ]
    assert done.stdout.endswith(f"printed 7\nworker {worker}\nparent {parent}\n")
