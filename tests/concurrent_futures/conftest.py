"""Fixtures of the conformance suite: the executor kinds, executors shared by a module's tests,
and the leak check, which spares those shared executors until their module is done."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import parallelize
from tests.concurrent_futures.util import KINDS, Gate, Kind
from tests.conftest import check_no_leaks

_shared: list[concurrent.futures.Executor] = []


def _spared() -> tuple[frozenset[int], frozenset[int]]:
    pids: set[int] = set()
    threads: set[int] = set()
    for executor in _shared:
        if isinstance(executor, parallelize.Pool):
            pids.update(executor.worker_pids())
            dispatcher = executor._backend._dispatcher
            if dispatcher is not None and dispatcher._thread.ident is not None:
                threads.add(dispatcher._thread.ident)
        else:
            pids.update(getattr(executor, "_processes", None) or {})
    return frozenset(pids), frozenset(threads)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """tests/conftest.py's check (this overrides it here), sparing the shared executors."""
    yield
    check_no_leaks(_spared)


@pytest.fixture(scope="module", params=KINDS, ids=[kind.name for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    result: Kind = request.param
    return result


@contextlib.contextmanager
def _sharing(executor: concurrent.futures.Executor) -> Iterator[concurrent.futures.Executor]:
    _shared.append(executor)
    try:
        yield executor
    finally:
        _shared.remove(executor)
        executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def executor(kind: Kind) -> Iterator[concurrent.futures.Executor]:
    """Two workers, shared by the module's tests (a test must leave it as it found it)."""
    with _sharing(kind.make()) as shared:
        yield shared


@pytest.fixture(scope="module")
def _gated(kind: Kind) -> Iterator[tuple[concurrent.futures.Executor, Gate]]:
    gate = Gate(kind.method)
    try:
        with _sharing(kind.make(**gate.initargs())) as shared:
            yield shared, gate
            gate.open()
    finally:
        gate.close()


@pytest.fixture
def gated(
    _gated: tuple[concurrent.futures.Executor, Gate],
) -> Iterator[tuple[concurrent.futures.Executor, Gate]]:
    """A shared executor whose workers run ``tasks.gated``; the gate is open again after the test,
    and the test must have waited for every gated task it submitted."""
    executor, gate = _gated
    gate.reset()
    try:
        yield executor, gate
    finally:
        gate.open()


@pytest.fixture
def make(kind: Kind) -> Iterator[Callable[..., concurrent.futures.Executor]]:
    """Executors of this test's own (for tests that shut down or break them); all shut down after."""
    made: list[concurrent.futures.Executor] = []

    def factory(**kwargs: Any) -> concurrent.futures.Executor:
        made.append(kind.make(**kwargs))
        return made[-1]

    yield factory
    for executor in made:
        executor.shutdown(wait=True)


@pytest.fixture
def gate(kind: Kind) -> Iterator[Gate]:
    """A gate for an executor of the test's own (request it before ``make``: it must outlive it)."""
    made = Gate(kind.method)
    try:
        yield made
    finally:
        made.open()
        made.close()
