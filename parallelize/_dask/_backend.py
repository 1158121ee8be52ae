"""The dask backend: parallelize's semantics on a dask.distributed cluster, behind ``Backend``.

Per task: ``_encode`` pickles the call in the caller's thread (``_wire``); ``_enqueue`` submits one
dask task, ``_wire.run(payload, token, attempt)``, with a key of its own and ``pure=False``, so
impure calls are never merged, and ``retries=0``, so dask never re-runs a task behind our back. A
coroutine on the client's event loop awaits the dask future and fills ours: dask's future never
reaches the caller.

Where dask is weaker than our contract, the backend makes up for it:

* Timeouts: dask has none per task. The worker arms a timer when the function starts (queueing
  does not count); when it fires, the worker logs a ``parallelize-timeout`` event, and we fail the
  task with ``TaskTimeout``, cancel its dask future and restart that worker through its nanny (a
  thread cannot be stopped; the process can). In a map chunk the timer is per item: the event
  carries the outcomes of the items before the slow one, and the rest of the chunk runs again
  (``_record``).
* Cancelling a running task: the dask future is cancelled, and the worker running it (asked with
  ``client.run``) is restarted the same way. Ctrl-C in a caller's wait cancels all of them.
* Crashes: a worker that dies while running our task. Dask re-runs such a task on another worker
  up to ``allowed-failures`` times, then raises ``KilledWorker``. We listen to the scheduler's
  ``remove-worker`` events: an unexpected removal fails the tasks it was processing with
  ``WorkerCrashed`` at once, and cancels their dask futures (on our embedded cluster
  ``allowed-failures`` is 0 as well, so dask itself re-runs nothing). Workers we restarted
  ourselves are not crashes: the other tasks they held are submitted again.
* Retries after a crash or a timeout are ours: the same payload under a new key, while the
  ``retries`` budget lasts (``retry_on`` exceptions are retried in the worker, as on a pool).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import PoolClosed, TaskTimeout, WorkerCrashed
from .._futures import settle
from .._outcomes import _tries
from .._tally import Tally
from .._task import Task
from . import _cluster, _wire
from ._record import Record, payload, token

if TYPE_CHECKING:
    from .._stats import PoolStats

# distributed's Client, LocalCluster and Future are only partly typed (many methods have no
# annotations, which mypy --strict refuses to call); they are handled as Any here, behind these names.
Client = Any
LocalCluster = Any
DaskFuture = Any

__all__ = ["DaskBackend"]

# How long a restart of one worker (stop, and its nanny starting a new one) may take.
RESTART_TIMEOUT = 60
_Job = tuple[Callable[..., None], tuple[Any, ...]]


class DaskBackend:
    """Calls and map chunks as dask tasks on one cluster (see the module docstring)."""

    def __init__(self, address: str | None, workers: int) -> None:
        self._client: Client
        self._cluster: LocalCluster | None
        self._client, self._cluster = _cluster.connect(address, workers)
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}  # by dask key; guarded by _lock
        self._tokens: dict[str, Record] = {}  # by token; guarded by _lock
        self._restarted: set[str] = set()  # worker addresses we restarted ourselves
        self._closed = False
        self._tally = Tally()  # outcomes (counted by the futures) and workers restarted or lost
        # One helper thread runs the blocking client calls that event handlers ask for (cancel,
        # restart, submit again). Started here, in the caller's thread: a thread started from
        # the event loop while a nanny spawns a worker was seen to hang in Thread.start().
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._helper = threading.Thread(target=self._work, name="parallelize-dask", daemon=True)
        self._helper.start()
        self._client.subscribe_topic(_wire.TIMEOUT_TOPIC, self._on_timeout)
        self._client.subscribe_topic("all", self._on_cluster_event)
        atexit.register(self.shutdown)

    @property
    def client(self) -> Client:
        return self._client

    @property
    def cluster(self) -> LocalCluster | None:
        """The LocalCluster we started, or None when the cluster is someone else's."""
        return self._cluster

    # -- the seam ----------------------------------------------------------------------------------

    def _encode(self, task: Task) -> None:
        task.payload = payload(task, 0)

    def _enqueue(self, task: Task) -> None:
        if self._closed:
            raise PoolClosed(f"the dask backend is shut down, so {task.describe()} was not submitted")
        record = Record(task, token())
        task.future._tally = self._tally
        with self._lock:
            self._tokens[record.token] = record
        self._submit(record)
        task.future._engine = self  # Ctrl-C in its result() interrupts our work (see interrupt)
        task.future.add_done_callback(lambda future: self._settled(record, future))

    def _capacity(self) -> int:
        try:
            return max(1, int(sum(self._client.nthreads().values())))
        except Exception:  # noqa: BLE001 - a scheduler that does not answer: map still works with 1
            return 1

    def stats(self) -> PoolStats:
        """Workers: as the client last heard from the scheduler (it asks every few seconds by
        itself; asking now would be a round trip). Every task handed to the cluster and not
        finished counts as running: which of them wait in the scheduler, only it knows."""
        identity = getattr(self._client, "_scheduler_identity", None) or {}
        with self._lock:
            on_cluster = len(self._tokens)
        return self._tally.snapshot(
            "dask", workers=int(identity.get("n_workers", 0) or 0), queued=0, running=on_cluster
        )

    # -- running -----------------------------------------------------------------------------------

    def _submit(self, record: Record) -> None:
        record.attempts += 1
        record.key = record.next_key()
        with self._lock:
            self._records[record.key] = record
        future = self._client.submit(
            _wire.run,
            record.task.payload,
            record.token,
            record.attempts,
            key=record.key,
            pure=False,
            retries=0,
        )
        record.dask = future
        self._client.loop.add_callback(self._watch, record, future)

    async def _watch(self, record: Record, future: DaskFuture) -> None:
        from distributed.scheduler import KilledWorker

        try:
            data = await self._client.gather(future, asynchronous=True)
        except KilledWorker as exc:
            self._lost(record, future, str(exc.last_worker.address))
        except (concurrent.futures.CancelledError, _cancelled_error()):
            return  # we cancelled it: the record was settled or submitted again already
        except BaseException as exc:  # noqa: BLE001 - dask's own failure (e.g. the scheduler went away)
            if record.dask is future:
                self._forget(record)
                settle(record.task.future, error=exc)
        else:
            if record.dask is future:
                self._forget(record)
                record.finish(data)

    def _lost(self, record: Record, future: DaskFuture, worker: str) -> None:
        """The worker running ``record`` went away (a crash, or a restart of ours)."""
        if record.dask is not future or record.task.future.done():
            return
        with self._lock:
            self._records.pop(record.key, None)
        if worker in self._restarted:
            record.attempts -= 1  # an innocent bystander of our restart: this run does not count
            self._later(self._resubmit, record)
            return
        task = record.task

        def error(attempts: int) -> BaseException:
            return WorkerCrashed(
                f"dask worker {worker} died while running {task.describe()}{_tries(attempts)}; "
                "dask replaces it (with a nanny) and the other tasks are unaffected"
            )

        self._fail_or_retry(record, error)

    def _fail_or_retry(self, record: Record, error: Callable[[int], BaseException]) -> None:
        future, record.dask = record.dask, None
        if future is not None:
            self._later(_cancel, future)
        if record.attempts <= record.task.options.retries and not self._closed:
            self._later(self._resubmit, record)
            return
        self._forget(record)
        settle(record.task.future, error=error(record.attempts))

    def _resubmit(self, record: Record, rest: bool = False) -> None:
        if record.task.future.done():
            return
        try:
            if rest:
                record.task.payload = payload(record.task, record.offset)
            self._submit(record)
        except BaseException as exc:  # noqa: BLE001 - e.g. the client closed: the caller hears of it
            self._forget(record)
            settle(record.task.future, error=exc)

    def _forget(self, record: Record) -> None:
        with self._lock:
            self._records.pop(record.key, None)
            self._tokens.pop(record.token, None)

    # -- events from the cluster (on the client's event loop) --------------------------------------

    def _on_timeout(self, event: tuple[float, dict[str, Any]]) -> None:
        _, message = event
        with self._lock:
            record = self._tokens.get(message.get("token", ""))
        if record is None or record.task.future.done():
            return
        worker = message.get("worker", "?")
        task = record.task
        limit = task.options.timeout or 0.0
        if "index" in message:
            self._item_timed_out(record, worker, message["done"], limit)
            return

        def error(attempts: int) -> BaseException:
            return TaskTimeout(
                f"{task.describe()} ran past its time limit of {limit:g} s on dask worker {worker}"
                f"{_tries(attempts)}; the worker was restarted"
            )

        self._restarted.add(worker)
        future = record.dask
        self._fail_or_retry(record, error)
        self._later(self._restart, worker, future)

    def _item_timed_out(self, record: Record, worker: str, done: bytes, limit: float) -> None:
        """An item of a chunk ran past its limit: restart the worker, and run the rest of the
        chunk under a new token (the old run's events are stale)."""
        self._restarted.add(worker)
        future, record.dask = record.dask, None
        with self._lock:
            self._records.pop(record.key, None)
            self._tokens.pop(record.token, None)
        self._later(self._restart, worker, future)
        if record.time_out_item(done, worker, limit):
            return
        record.token = token()
        with self._lock:
            self._tokens[record.token] = record
        self._later(self._resubmit, record, True)

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        worker = str(message.get("worker", ""))
        if message.get("expected") or worker in self._restarted:
            return
        self._tally.add("replaced")
        with self._lock:
            lost = [self._records[key] for key in message.get("processing-tasks", ()) if key in self._records]
        for record in lost:
            if record.dask is not None:
                self._lost(record, record.dask, worker)

    # -- stopping tasks ----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Ctrl-C while a caller waits for one of our futures: as on a pool, every task of ours
        submitted so far is cancelled, queued or running (running ones stop with their worker's
        restart, see ``_stop``). The backend stays usable."""
        with self._lock:
            records = list(self._tokens.values())
        for record in records:
            record.task.future.cancel()

    def stop(self, task: Task) -> None:
        """Stop one task (``Future.cancel`` asks this only of a running future; ours stay
        pending while dask holds them, and a plain cancel reaches ``_settled``)."""
        task.future.cancel()

    def _settled(self, record: Record, future: concurrent.futures.Future[Any]) -> None:
        if not future.cancelled():
            return
        dask_future, record.dask = record.dask, None
        self._forget(record)
        if dask_future is not None and not self._closed:
            self._later(self._stop, record.token, dask_future)

    def _stop(self, token: str, future: DaskFuture) -> None:
        """Cancel a dask task; restart the worker running it, if one is."""
        try:
            holders = self._client.run(_wire.holding, token, on_error="ignore")
        except Exception:  # noqa: BLE001 - the client closed meanwhile: the cluster releases it
            holders = {}
        _cancel(future)
        for worker, holding in holders.items():
            if holding is True:
                self._restarted.add(worker)
                self._restart(worker, None)

    def _restart(self, worker: str, future: DaskFuture | None) -> None:
        if future is not None:
            _cancel(future)
        self._tally.add("replaced")
        # Even while shutting down: a caller that shuts down right after a TaskTimeout must not
        # leave the task running (shutdown waits for this helper's queued jobs).
        # the worker may be gone already: nothing else to do then
        with contextlib.suppress(Exception):
            self._client.restart_workers([worker], timeout=RESTART_TIMEOUT, raise_for_error=False)

    def _later(self, function: Callable[..., None], *args: Any) -> None:
        """Run a blocking client call off the event loop (handlers and callbacks must not block)."""
        self._jobs.put((function, args))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            function, args = job
            try:
                function(*args)
            except Exception:  # noqa: BLE001 - a client call on a closing client; the helper goes on
                continue

    # -- lifecycle ---------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Release our futures, close our client, and the cluster only if we started it."""
        if self._closed:
            return
        atexit.unregister(self.shutdown)
        with self._lock:
            records = list(self._tokens.values())
        if cancel_pending:
            for record in records:
                record.task.future.cancel()
        elif wait:
            concurrent.futures.wait([record.task.future for record in records])
        self._closed = True
        if wait:
            self._close()
        else:
            threading.Thread(target=self._close, name="parallelize-dask-close", daemon=True).start()

    def _close(self) -> None:
        with self._lock:
            records = list(self._tokens.values())
            self._tokens.clear()
            self._records.clear()
        for record in records:
            settle(record.task.future, error=PoolClosed("the dask backend was shut down"))
        self._jobs.put(None)
        self._helper.join(RESTART_TIMEOUT)  # a restart under way finishes before its cluster closes
        for topic in (_wire.TIMEOUT_TOPIC, "all"):
            self._client.unsubscribe_topic(topic)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _cancel(future: DaskFuture) -> None:
    with contextlib.suppress(Exception):  # a closed client: the future is released with it
        future.cancel()


def _cancelled_error() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError
