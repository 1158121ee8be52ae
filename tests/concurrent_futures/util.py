"""The Executor conformance suite's harness: which executors it runs against, and the table of
every intentional difference between ``parallelize.Pool`` and ``ProcessPoolExecutor``.

The suite (this package, organised like CPython's Lib/test/test_concurrent_futures/: executor
behaviour, wait, as_completed, shutdown, initializer, deadlock and broken-worker cases)
is written from the ``concurrent.futures`` documentation and runs each test against three
executors, built by the same code through ``ProcessPoolExecutor``'s own argument names:

* ``Pool[forkserver]``, ``Pool[spawn]``: what is tested;
* ``ProcessPoolExecutor[forkserver]``: the control. A test that fails on it tests something the
  contract does not promise.

Where the two differ on purpose, the test names the difference (``differs(kind, name)``) and
asserts each side's behaviour: a difference is a decision, written down in ``DIFFERENCES`` with
its reason, and in README's compatibility table (test_executor.py checks that every name here
appears there and in some test). No test is skipped for either executor.

Executors that tests can share are made once per module (see conftest.py): starting workers is
most of this suite's time.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from dataclasses import dataclass
from typing import Any

import parallelize
from tests.concurrent_futures import tasks
from tests.conftest import START_METHODS

# Every blocking call in the suite waits at most this long.
WAIT = 30.0


@dataclass(frozen=True)
class Kind:
    """One executor the suite runs against."""

    control: bool  # ProcessPoolExecutor, the control; else parallelize.Pool
    method: str

    @property
    def name(self) -> str:
        return f"{'ProcessPoolExecutor' if self.control else 'Pool'}[{self.method}]"

    def make(self, workers: int = 2, **kwargs: Any) -> concurrent.futures.Executor:
        """The executor, made through ProcessPoolExecutor's names (Pool accepts them too)."""
        context = multiprocessing.get_context(self.method)
        if self.control:
            return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, **kwargs)
        return parallelize.Pool(max_workers=workers, mp_context=context, **kwargs)


KINDS = [Kind(False, method) for method in START_METHODS] + [Kind(True, START_METHODS[0])]


@dataclass(frozen=True)
class Difference:
    control: str  # what ProcessPoolExecutor does
    pool: str  # what Pool does
    reason: str


DIFFERENCES: dict[str, Difference] = {
    "crash-fails-one-task": Difference(
        control="a worker that dies breaks the executor: every pending future fails with "
        "BrokenProcessPool, and so does every later submit()",
        pool="the task that was running fails with WorkerCrashed (exit code or signal named); "
        "the worker is replaced and the pool goes on serving",
        reason="one crashing input must not cost the rest of a long computation",
    ),
    "failing-initializer": Difference(
        control="the executor breaks: futures fail with BrokenProcessPool",
        pool="each task sent to a worker whose initializer failed fails with WorkerCrashed, "
        "the initializer's exception as its cause; the pool stays open",
        reason="the same rule as a crash: a failure costs tasks, not the pool",
    ),
    "unpicklable-argument-at-submit": Difference(
        control="submit() returns a future that fails with the pickling error",
        pool="submit() raises SerializationError (a PicklingError and a TypeError) naming the "
        "argument; nothing reaches the pool",
        reason="the mistake surfaces at the line that made it, and the pool is never touched",
    ),
    "unrebuildable-exception": Difference(
        control="an exception that cannot be unpickled in the parent breaks the executor (BrokenProcessPool)",
        pool="that task fails with SerializationError carrying the exception's type, message "
        "and traceback; the pool goes on",
        reason="a broken exception class costs one task, never the pool",
    ),
    "initargs-checked-at-construction": Difference(
        control="initargs that cannot go to a worker raise when a worker starts, from submit()",
        pool="Pool() raises SerializationError naming initargs",
        reason="the mistake surfaces where it was made, before any work is accepted",
    ),
    "cancel-running": Difference(
        control="cancel() of a running future returns False; the work runs on",
        pool="cancel() of a running future stops it (its worker is replaced) and returns True",
        reason="a process pool can stop work in flight, and long tasks need that",
    ),
    "map-goes-on-after-error": Difference(
        control="map's iterator raises a failed item's exception and is then finished",
        pool="next() raises the failed item's exception at its place, and the next next() goes "
        "on with the following items (a for loop still stops at the raise)",
        reason="every item has its own outcome; one failure does not lose the others",
    ),
    "map-reads-input-lazily": Difference(
        control="map() reads every input item and submits them all at the call",
        pool="map() is lazy like builtins.map: it starts at the first next() and reads the input "
        "a few chunks ahead of the output; chunksize defaults to adaptive (chunksize=1 still means 1)",
        reason="a map over a huge or endless generator runs in bounded memory, and all its items "
        "run one snapshot of the function, taken when it starts",
    ),
    "submit-timeout-keyword": Difference(
        control="submit(fn, timeout=5) passes timeout=5 to fn",
        pool="timeout= is the task's time limit; when fn itself takes timeout (or **kwargs), "
        "submit() raises TypeError rather than guess",
        reason="a per-task time limit is a core feature; an ambiguous call must not change meaning silently",
    ),
}


def differs(kind: Kind, name: str) -> bool:
    """True where ``kind`` is a Pool and the named difference applies (the name must be listed)."""
    if name not in DIFFERENCES:
        raise KeyError(f"{name!r} is not in DIFFERENCES: name every intentional difference there")
    return not kind.control


def kind_ids(kind: Kind) -> str:
    return kind.name


class Gate:
    """Holds ``tasks.gated`` work running until the test opens it.

    Two pipes reach the workers through ``initargs`` (so by inheritance): one on which each gated
    task says it started, and one that is the gate, open while it holds a byte (``poll`` sees it
    without taking it). Pipes, not a multiprocessing Event or Queue: Pool stops a running task by
    killing its worker, and a worker killed while waiting on an Event leaves the Event broken.
    """

    def __init__(self, method: str) -> None:
        context = multiprocessing.get_context(method)
        self._started, self._starts = context.Pipe(duplex=False)
        self._gate, self._opener = context.Pipe(duplex=False)
        self._open = False

    def initargs(self) -> dict[str, Any]:
        return {"initializer": tasks.init_gate, "initargs": (self._starts, self._gate)}

    def wait_started(self, count: int) -> list[int]:
        """The items of the next ``count`` gated tasks to start, as they report it."""
        items = []
        for _ in range(count):
            if not self._started.poll(WAIT):
                raise AssertionError(f"no gated task started within {WAIT} s")
            items.append(self._started.recv())
        return items

    def open(self) -> None:
        if not self._open:
            self._opener.send_bytes(b"open")
            self._open = True

    def reset(self) -> None:
        """Closed again, with no start reported."""
        for end in (self._gate, self._started):
            while end.poll(0):
                end.recv_bytes()
        self._open = False

    def close(self) -> None:
        for end in (self._started, self._starts, self._gate, self._opener):
            end.close()
