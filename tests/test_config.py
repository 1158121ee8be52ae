"""configure(), the PARALLELIZE_* variables, the default pool's life, and the CPU budget."""

from __future__ import annotations

import math
import multiprocessing.forkserver
import os
import subprocess
import sys
from pathlib import Path

import pytest

import parallelize
from parallelize import ParallelizeError, Pool, PoolState, _config, _settings

from . import core_tasks, workers

RESULT_TIMEOUT = 30
ENV_VARS = ("PARALLELIZE_WORKERS", "PARALLELIZE_START_METHOD", "PARALLELIZE_BACKEND")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the machine's defaults, whatever the calling shell exported."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def forkserver_pid() -> int | None:
    pid: int | None = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    return pid


def assert_started_with(method: str, parent: int) -> None:
    """Evidence of the start method from the worker's parent: spawn children are ours, forkserver
    children belong to the fork server."""
    if method == "spawn":
        assert parent == os.getpid()
    else:
        assert method == "forkserver"
        assert parent != os.getpid()
        assert parent == forkserver_pid()


def default_pool() -> Pool:
    pool = _config._default_pool
    assert pool is not None
    return pool


# -- configure() -----------------------------------------------------------------------------------


def test_configure_before_first_use_takes_effect(start_method: str) -> None:
    parallelize.configure(workers=1, start_method=start_method)
    futures = [core_tasks.decorated_ppid() for _ in range(4)]
    results = {f.result(timeout=RESULT_TIMEOUT) for f in futures}
    assert len(results) == 1  # one worker served all four
    ((pid, parent),) = results
    assert default_pool().workers == 1
    assert workers.default_pool_pids() == [pid]
    assert_started_with(start_method, parent)


def test_configure_workers_allows_that_many_at_once(tmp_path: Path) -> None:
    parallelize.configure(workers=3)
    futures = [core_tasks.decorated_rendezvous(str(tmp_path / "meet"), 3) for _ in range(3)]
    assert len({f.result(timeout=RESULT_TIMEOUT) for f in futures}) == 3
    assert default_pool().workers == 3
    assert len(workers.default_pool_pids()) == 3


def test_configure_after_first_use_raises_until_shutdown() -> None:
    parallelize.configure(workers=2)
    assert workers.decorated_square(2).result(timeout=RESULT_TIMEOUT) == 4
    first = default_pool()
    with pytest.raises(ParallelizeError, match="shutdown"):
        parallelize.configure(workers=1)
    with pytest.raises(ParallelizeError):
        parallelize.configure(start_method="spawn")

    parallelize.shutdown()
    assert first.state is PoolState.CLOSED
    assert _config._default_pool is None
    # the refused call changed nothing: the next pool still has 2 workers
    assert workers.decorated_square(3).result(timeout=RESULT_TIMEOUT) == 9
    second = default_pool()
    assert second is not first
    assert second.workers == 2

    parallelize.shutdown()
    parallelize.configure(workers=1)
    assert workers.decorated_square(4).result(timeout=RESULT_TIMEOUT) == 16
    third = default_pool()
    assert third is not second
    assert third.workers == 1


def test_configure_after_the_thread_backend_started_raises() -> None:
    parallelize.configure(backend="thread")
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) == os.getpid()
    with pytest.raises(ParallelizeError, match="shutdown"):
        parallelize.configure(workers=1)
    parallelize.shutdown()
    parallelize.configure(workers=1)


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": -3}, "workers"),
        ({"start_method": "teleport"}, "start_method"),
        ({"backend": "gpu"}, "backend"),
    ],
)
def test_configure_rejects_invalid_values(options: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        parallelize.configure(**options)  # type: ignore[arg-type]
    assert Pool().workers == parallelize.available_cpus()  # nothing was stored


# -- when the settings are read --------------------------------------------------------------------


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[None]:
    """Make ``_config.<name>`` record each call in the list returned (it still runs as before)."""
    calls: list[None] = []
    real = getattr(_config, name)

    def counted() -> object:
        calls.append(None)
        return real()

    monkeypatch.setattr(_config, name, counted)
    return calls


def test_settings_are_read_by_the_first_call_not_by_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_calls = _count_calls(monkeypatch, "settings")
    cpu_calls = _count_calls(monkeypatch, "available_cpus")
    forms = {
        "the default pool": workers.decorated_square,
        "backend='thread'": parallelize.parallel(backend="thread")(workers.square),
        "workers=2 on the default pool": parallelize.parallel(workers=2)(workers.square),
    }
    for form, function in forms.items():
        assert function(3).result(timeout=RESULT_TIMEOUT) == 9, form
    assert settings_calls, "the first calls read the settings"
    settings_calls.clear()
    cpu_calls.clear()

    for form, function in forms.items():
        futures = [function(i) for i in range(50)]
        assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [i * i for i in range(50)], form
        assert settings_calls == [], f"calls on {form} read the settings again"
        assert cpu_calls == [], f"calls on {form} read the CPU budget again"


def test_the_environment_is_read_again_after_shutdown_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_WORKERS", "1")
    assert workers.decorated_square(2).result(timeout=RESULT_TIMEOUT) == 4
    first = default_pool()
    assert first.workers == 1

    monkeypatch.setenv("PARALLELIZE_WORKERS", "2")
    assert workers.decorated_square(3).result(timeout=RESULT_TIMEOUT) == 9
    assert default_pool() is first  # settings are read when the default pool is built, once

    parallelize.shutdown()
    assert workers.decorated_square(4).result(timeout=RESULT_TIMEOUT) == 16
    second = default_pool()
    assert second is not first
    assert second.workers == 2
    assert first.state is PoolState.CLOSED


def test_a_sync_default_is_chosen_again_after_configure_or_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sync backend starts nothing, so configure() is allowed after its first use: the next call
    # must follow the new settings, not the backend the first call resolved.
    parallelize.configure(backend="sync")
    assert core_tasks.decorated_thread_name().result(timeout=RESULT_TIMEOUT) == "MainThread"
    parallelize.configure(backend="thread")
    assert core_tasks.decorated_thread_name().result(timeout=RESULT_TIMEOUT).startswith("parallelize-thread")

    parallelize.shutdown()
    _config.reset_for_tests()
    monkeypatch.setenv("PARALLELIZE_BACKEND", "sync")
    assert core_tasks.decorated_thread_name().result(timeout=RESULT_TIMEOUT) == "MainThread"
    monkeypatch.setenv("PARALLELIZE_BACKEND", "thread")
    assert core_tasks.decorated_thread_name().result(timeout=RESULT_TIMEOUT) == "MainThread"
    parallelize.shutdown()
    assert core_tasks.decorated_thread_name().result(timeout=RESULT_TIMEOUT).startswith("parallelize-thread")


def test_a_worker_forked_after_the_default_was_resolved_runs_nested_calls_inline() -> None:
    # With fork, the worker starts as a copy of this process, whose default backend is the pool.
    parallelize.configure(start_method="fork", workers=1)
    assert workers.decorated_square(2).result(timeout=RESULT_TIMEOUT) == 4
    outer, inner = core_tasks.nested_pids().result(timeout=RESULT_TIMEOUT)
    assert outer == inner
    assert outer in default_pool().worker_pids()


# -- environment variables -------------------------------------------------------------------------


def test_env_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_WORKERS", "1")
    futures = [core_tasks.decorated_getpid() for _ in range(3)]
    assert len({f.result(timeout=RESULT_TIMEOUT) for f in futures}) == 1
    assert default_pool().workers == 1
    assert Pool().workers == 1


def test_env_workers_empty_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_WORKERS", "")
    assert Pool().workers == parallelize.available_cpus()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_env_start_method(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    monkeypatch.setenv("PARALLELIZE_START_METHOD", method)
    _, parent = core_tasks.decorated_ppid().result(timeout=RESULT_TIMEOUT)
    assert_started_with(method, parent)


def test_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_BACKEND", "thread")
    assert core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT) == os.getpid()
    assert _config._default_pool is None


def test_configure_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLELIZE_WORKERS", "1")
    monkeypatch.setenv("PARALLELIZE_START_METHOD", "forkserver")
    parallelize.configure(workers=2, start_method="spawn")
    _, parent = core_tasks.decorated_ppid().result(timeout=RESULT_TIMEOUT)
    assert default_pool().workers == 2
    assert_started_with("spawn", parent)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PARALLELIZE_WORKERS", "0"),
        ("PARALLELIZE_WORKERS", "-2"),
        ("PARALLELIZE_WORKERS", "many"),
        ("PARALLELIZE_WORKERS", "1.5"),
        ("PARALLELIZE_START_METHOD", "teleport"),
        ("PARALLELIZE_BACKEND", "gpu"),
    ],
)
def test_invalid_env_values_raise_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name) as info:
        workers.decorated_square(2)
    assert repr(value) in str(info.value)
    assert _config._default_pool is None
    with pytest.raises(ValueError, match=name):
        Pool()


# -- the CPU budget and the platform default -------------------------------------------------------


def test_available_cpus_respects_affinity_and_quota() -> None:
    cpus = parallelize.available_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    affinity = len(os.sched_getaffinity(0))
    quota = _settings._cgroup_cpu_quota()
    expected = affinity if quota is None else min(affinity, max(1, math.ceil(quota)))
    assert cpus == expected
    assert Pool().workers == cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_available_cpus_follows_a_restricted_affinity() -> None:
    cpu = min(os.sched_getaffinity(0))
    code = (
        "import os, parallelize\n"
        f"os.sched_setaffinity(0, {{{cpu}}})\n"
        "print(parallelize.available_cpus(), parallelize.Pool().workers)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forkserver is the Linux default")
def test_default_start_method_is_forkserver_on_linux() -> None:
    with Pool(1) as pool:
        _, parent = pool.submit(core_tasks.ppid).result(timeout=RESULT_TIMEOUT)
    assert_started_with("forkserver", parent)
    _, parent = core_tasks.decorated_ppid().result(timeout=RESULT_TIMEOUT)
    assert_started_with("forkserver", parent)
