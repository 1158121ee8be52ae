"""Where the dask backend runs: an address, the process's current client, or a cluster of our own.

The order is the issue's: ``configure(dask_address=...)`` or ``PARALLELIZE_DASK_ADDRESS``; else a
``distributed.Client`` already current in this process (we connect a client of our own to its
scheduler, so our event handlers never replace the user's, and closing ours leaves theirs alone);
else an embedded ``LocalCluster`` started now: one process worker per CPU this process may use
(``available_cpus()``), one thread each, each under a nanny (which restarts it when a timeout or a
cancel stops it).

The embedded scheduler is configured for parallelize's semantics: ``allowed-failures`` 0, so a task
whose worker dies fails at once (``KilledWorker``, which we report as ``WorkerCrashed``) instead of
being re-run on other workers; ``worker-saturation`` 1.0, so a worker holds only the task it runs,
and a worker that dies or is restarted takes no queued task down with it. A cluster we did not
start keeps its own settings (see the README, "Going distributed").
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# distributed's classes are only partly typed: handled as Any behind these names.
Client = Any
LocalCluster = Any

# Turns "cannot reach the scheduler" into an error instead of a hang.
CONNECT_TIMEOUT = "30s"


def connect(address: str | None, workers: int) -> tuple[Client, LocalCluster | None]:
    """A client of our own, and the cluster when we started it (else None: never ours to close)."""
    distributed: Any = importlib.import_module("distributed")  # untyped constructors: see Client

    if address:
        client = distributed.Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT)
        _check_settings(client)
        return client, None
    current = _current_client()
    if current is not None:
        client = distributed.Client(
            current.scheduler.address,
            security=current.security,
            set_as_default=False,
            timeout=CONNECT_TIMEOUT,
        )
        _check_settings(client)
        return client, None
    cluster = start_embedded(workers)
    try:
        return distributed.Client(cluster, set_as_default=False, timeout=CONNECT_TIMEOUT), cluster
    except BaseException:
        cluster.close()
        raise


def start_embedded(workers: int) -> LocalCluster:
    """A LocalCluster of ``workers`` single-threaded process workers with nannies, on loopback."""
    import dask

    distributed: Any = importlib.import_module("distributed")
    settings: dict[str, Any] = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port: never a clash with another cluster
            # what dask logs about the workers we stop or lose, we report as TaskTimeout or WorkerCrashed
            silence_logs=logging.CRITICAL,
        )


def _current_client() -> Client | None:
    distributed: Any = importlib.import_module("distributed")

    try:
        return distributed.default_client()
    except ValueError:
        return None


def _check_settings(client: Client) -> None:
    """Say once, on connecting to a cluster we did not start, what its settings cost us.

    With ``allowed-failures`` above 0 (dask's default is 3) the scheduler may start a task whose
    worker died once more elsewhere before our cancel reaches it: the caller still gets
    WorkerCrashed at once, but the task may run (and crash) again. We never change a cluster
    that is not ours; the warning names the setting that fixes it.
    """
    try:
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    except Exception:  # noqa: BLE001 - a scheduler that refuses to run code: nothing to say
        return
    if isinstance(allowed, int) and allowed > 0:
        log.warning(
            "the dask scheduler at %s has allowed-failures=%d: a task whose worker dies fails at once "
            "with WorkerCrashed, but the scheduler may start it once more on another worker first; "
            "set distributed.scheduler.allowed-failures to 0 in the scheduler's configuration to "
            "prevent that",
            client.scheduler.address,
            allowed,
        )


log = logging.getLogger("parallelize")
