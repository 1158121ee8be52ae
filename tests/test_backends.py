"""The thread and sync backends, and how the default backend is chosen."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import parallelize
from parallelize import SerializationError, _config, parallel

from . import core_tasks, workers

RESULT_TIMEOUT = 30

pytestmark = pytest.mark.timeout(30)


# -- thread ----------------------------------------------------------------------------------------


def test_thread_backend_runs_in_threads_of_this_process() -> None:
    assert parallel(backend="thread")(workers.getpid)().result(timeout=RESULT_TIMEOUT) == os.getpid()
    name = parallel(backend="thread")(core_tasks.thread_name)().result(timeout=RESULT_TIMEOUT)
    assert name.startswith("parallelize-thread")
    ident = parallel(backend="thread")(core_tasks.thread_ident)().result(timeout=RESULT_TIMEOUT)
    assert ident != threading.get_ident()
    assert _config._default_pool is None


def test_thread_backend_shares_memory_so_unpicklable_arguments_work() -> None:
    lock = threading.Lock()
    identity = parallel(backend="thread")(workers.identity)
    assert identity(lock).result(timeout=RESULT_TIMEOUT) is lock
    items: list[int] = []
    assert parallel(backend="thread")(core_tasks.append_one)(items).result(timeout=RESULT_TIMEOUT) is items
    assert items == [1]
    assert parallel(backend="thread")(workers.return_lock)().result(timeout=RESULT_TIMEOUT) is not None


def test_thread_backend_runs_calls_at_once(tmp_path: Path) -> None:
    parallelize.configure(workers=2)  # the thread backend's size, too
    meet = parallel(backend="thread")(core_tasks.rendezvous)
    directory = str(tmp_path / "meet")
    futures = [meet(directory, 2) for _ in range(2)]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [os.getpid(), os.getpid()]


def test_thread_backend_exceptions_keep_their_type() -> None:
    with pytest.raises(workers.CustomError, match="thread trouble") as info:
        parallel(backend="thread")(workers.raise_custom)("thread trouble", 5).result(timeout=RESULT_TIMEOUT)
    assert info.value.code == 5


# -- sync ------------------------------------------------------------------------------------------


def test_sync_backend_runs_inline_at_submit_time() -> None:
    before = len(core_tasks.CALLS)
    record = parallel(backend="sync")(core_tasks.record_call)
    future = record("now")
    # already done, and it ran in this process: the module-level list here grew
    assert future.done()
    assert core_tasks.CALLS[before:] == ["now"]
    assert future.result(timeout=0) == "now"
    ident = parallel(backend="sync")(core_tasks.thread_ident)().result(timeout=0)
    assert ident == threading.get_ident()
    assert _config._default_pool is None


def test_sync_backend_passes_copies_like_a_process_would() -> None:
    items = [0]
    result = parallel(backend="sync")(core_tasks.append_one)(items).result(timeout=0)
    assert result == [0, 1]
    assert items == [0]  # the function saw a pickled copy


def test_sync_backend_rejects_unpicklable_arguments_at_call_time() -> None:
    before = len(core_tasks.CALLS)
    record = parallel(backend="sync")(core_tasks.record_call)
    with pytest.raises(SerializationError, match="argument 'x'") as info:
        record(threading.Lock())
    assert "_thread.lock" in str(info.value)
    assert len(core_tasks.CALLS) == before  # never ran


def test_sync_backend_rejects_unpicklable_results() -> None:
    future = parallel(backend="sync")(workers.return_lock)()
    with pytest.raises(SerializationError, match="return_lock"):
        future.result(timeout=0)


def test_sync_backend_exceptions_keep_their_type() -> None:
    future = parallel(backend="sync")(workers.raise_custom)("sync trouble", 9)
    with pytest.raises(workers.CustomError, match="sync trouble") as info:
        future.result(timeout=0)
    assert type(info.value) is workers.CustomError
    assert info.value.code == 9


def test_sync_backend_unpicklable_exception_becomes_a_serialization_error() -> None:
    future = parallel(backend="sync")(workers.raise_unpicklable)("stuck here")
    with pytest.raises(SerializationError) as info:
        future.result(timeout=0)
    assert info.value.original_type == "tests.workers.UnpicklableError"
    assert "stuck here" in str(info.value)


def test_sync_backend_system_exit_lands_on_the_future() -> None:
    future = parallel(backend="sync")(workers.raise_system_exit)(4)
    with pytest.raises(SystemExit) as info:
        future.result(timeout=0)
    assert info.value.code == 4


# -- choosing the default --------------------------------------------------------------------------


def test_configure_backend_thread_applies_to_decorated_functions() -> None:
    parallelize.configure(backend="thread")
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) == os.getpid()
    assert _config._default_pool is None
    # an explicit backend= still wins over the configured default
    assert parallel(backend="process")(workers.getpid)().result(timeout=RESULT_TIMEOUT) != os.getpid()


def test_configure_backend_sync_runs_inline() -> None:
    parallelize.configure(backend="sync")
    future = core_tasks.decorated_getpid()
    assert future.done()
    assert future.result(timeout=0) == os.getpid()


@pytest.mark.parametrize("backend", ["thread", "sync"])
def test_env_var_selects_the_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("PARALLELIZE_BACKEND", backend)
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) == os.getpid()
    assert _config._default_pool is None


def test_env_var_process_backend_uses_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_BACKEND", "process")
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) != os.getpid()


def test_configure_wins_over_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_BACKEND", "sync")
    parallelize.configure(backend="process")
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) != os.getpid()
