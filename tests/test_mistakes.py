"""Mistakes get a message that says what to do, at the point of the mistake (issue 8, item 4).

async def functions run (a fresh event loop per call); arguments that cannot reach another
process are refused at the call with the argument named and what to pass instead;
``@parallel(4)`` hints at ``workers=4``; a script without the ``__main__`` guard gets one line
naming the fix; ``dir()`` and ``help()`` show what a decorated function offers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pydoc
import socket
import threading
from pathlib import Path

import pytest

from parallelize import Pool, SerializationError, in_process, parallel

from . import lifecycle_tasks, mistake_tasks

RESULT_TIMEOUT = 30
SCRIPT_TIMEOUT = 30


# -- async def --------------------------------------------------------------------------------


def test_async_def_runs_on_the_default_pool(default_start_method: str) -> None:
    assert mistake_tasks.async_double(21).result(timeout=RESULT_TIMEOUT) == 42
    assert list(mistake_tasks.async_double.map(range(5), timeout=RESULT_TIMEOUT)) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="boom"):
        mistake_tasks.async_fails("boom").result(timeout=RESULT_TIMEOUT)


def test_async_def_runs_on_an_explicit_pool(pool: Pool) -> None:
    # not decorated: the worker sees a coroutine function when it loads it, and runs its calls
    x, pid = pool.submit(mistake_tasks.plain_async_pid, 3).result(timeout=RESULT_TIMEOUT)
    assert x == 3
    assert pid in pool.worker_pids()


def test_async_def_on_thread_and_sync_backends() -> None:
    assert mistake_tasks.async_on_thread(1).result(timeout=RESULT_TIMEOUT) == 2
    assert mistake_tasks.async_on_sync(1).result(timeout=RESULT_TIMEOUT) == 3


def test_async_def_awaited_from_a_running_loop(default_start_method: str) -> None:
    async def main() -> tuple[int, int, int, int]:
        return (
            await mistake_tasks.async_double(5),
            await mistake_tasks.async_in_process(5),
            await mistake_tasks.async_on_sync(5),  # inline, while this loop runs
            await mistake_tasks.async_isolated_pid(),
        )

    doubled, scaled, synced, pid = asyncio.run(asyncio.wait_for(main(), RESULT_TIMEOUT))
    assert (doubled, scaled, synced) == (10, 50, 7)
    assert pid != os.getpid()


def test_in_process_async_def_stays_awaitable() -> None:
    coroutine = mistake_tasks.async_in_process(1)
    assert asyncio.iscoroutine(coroutine)
    coroutine.close()  # nothing was submitted: like any coroutine, it runs only when awaited


def test_a_returned_coroutine_is_named(default_start_method: str) -> None:
    with pytest.raises(SerializationError, match="returned a coroutine; decorate an async def directly"):
        mistake_tasks.returns_coroutine().result(timeout=RESULT_TIMEOUT)


# -- arguments that cannot cross ----------------------------------------------------------------


def _refused(value: object, *hints: str) -> None:
    with pytest.raises(SerializationError) as caught:
        mistake_tasks.takes(value)
    message = str(caught.value)
    assert message.startswith("argument 'value' (")
    assert "of tests.mistake_tasks.takes could not be pickled, so the call was not submitted" in message
    for hint in hints:
        assert hint in message


def test_open_files_are_refused_naming_what_to_pass(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello")
    for mode in ("r", "rb", "a+"):
        with open(path, mode) as f:
            _refused(f, "pass its path and open the file in the function")
    with open(tmp_path / "out.txt", "w") as f:
        _refused(f, "pass its path and open the file in the function")
    # the advice works: the path does
    assert parallel(mistake_tasks.reads_path)(str(path)).result(timeout=RESULT_TIMEOUT) == "hello"


def test_sockets_generators_threads_and_locks_are_refused() -> None:
    with socket.socket() as sock:
        _refused(sock, "(socket.socket)", "pass the address and connect in the function")
    _refused((i for i in range(3)), "(generator)", "pass a list of its items")
    _refused(threading.Thread(target=print), "pass the data it works on")
    _refused(threading.Lock(), "(_thread.lock)", "multiprocessing.Manager()")
    _refused(threading.Event(), "multiprocessing.Manager()")


@pytest.mark.parametrize("make", [multiprocessing.Queue, multiprocessing.Lock])
def test_multiprocessing_queues_and_locks_point_to_a_manager(make: type) -> None:
    value = make()
    _refused(value, "through inheritance", "manager.Queue(), manager.Lock()")
    if hasattr(value, "close"):
        value.close()
        value.join_thread()


# -- @parallel(4) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decorator", "argument", "hint"),
    [
        (parallel, 4, "`@parallel(4)`: did you mean `@parallel(workers=4)`?"),
        (parallel, "thread", "did you mean `@parallel(backend='thread')`?"),
        (in_process, "sync", "did you mean `@in_process(backend='sync')`?"),
        (in_process, 2, "`@in_process(2)`: its options are keyword arguments"),
        (parallel, None.__class__, None),
    ],
)
def test_positional_options_get_a_hint(decorator: object, argument: object, hint: str | None) -> None:
    if hint is None:
        return  # a class is callable: decorating it is allowed
    with pytest.raises(TypeError) as caught:
        decorator(argument)  # type: ignore[operator]
    assert hint in str(caught.value)


def test_a_pool_passed_positionally_gets_a_hint() -> None:
    p = Pool(1)
    try:
        with pytest.raises(TypeError, match=r"did you mean `@parallel\(pool=\.\.\.\)`"):
            parallel(p)  # type: ignore[call-overload]
    finally:
        p.shutdown()


# -- dir() and help() ---------------------------------------------------------------------------


def test_dir_shows_the_methods_and_the_function_attributes() -> None:
    names = dir(mistake_tasks.takes)
    assert {"submit", "map", "starmap", "__name__", "__doc__"} <= set(names)
    assert names == sorted(names)
    assert "submit" not in dir(mistake_tasks.async_in_process)  # @in_process has no methods


def test_help_says_a_call_returns_a_future() -> None:
    text = pydoc.render_doc(mistake_tasks.takes, renderer=pydoc.plaintext)
    assert "takes(value: 'object') -> 'parallelize.Future[str]'" in text or (
        "takes(value: object) -> parallelize.Future[str]" in text
    )
    in_process_text = pydoc.render_doc(mistake_tasks.async_in_process, renderer=pydoc.plaintext)
    assert "async async_in_process(x: 'int') -> 'int'" in in_process_text or (
        "async async_in_process(x: int) -> int" in in_process_text
    )


# -- the main-module guard ------------------------------------------------------------------------

UNGUARDED = """
from parallelize import parallel

@parallel
def double(x: int) -> int:
    return 2 * x

print(double(3).result(timeout=30))
"""


def test_a_script_without_the_guard_is_told_the_fix(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    done = lifecycle_tasks.run_script([str(script)], start_method, tmp_path, timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    fix = 'guard its calls with `if __name__ == "__main__":`'
    assert lines[0].startswith("parallelize: worker "), done.stderr
    assert lines[0].endswith(
        f"the main module unguarded.py starts parallel work when it is imported, "
        f"and workers import it again; {fix}"
    )
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].startswith(f"parallelize.WorkerCrashed: the main module unguarded.py must {fix}: ")
    assert len(lines) < 20, done.stderr
