"""parallelize: multiprocessing that feels like calling a function.

    @parallel
    def score(doc: str) -> float: ...

    futures = [score(d) for d in docs]   # Future[float]s computed in worker processes
    totals = list(score.map(docs))       # lazy, ordered, chunked automatically

See README.md for the tour. Public names are re-exported here; the modules behind them are
private (underscored) and may change.
"""

from ._config import available_cpus, configure, shutdown
from ._decorators import InProcessFunction, ParallelFunction, in_process, parallel
from ._errors import (
    ParallelizeError,
    PoolClosed,
    RemoteTraceback,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
)
from ._futures import Future
from ._pool import Pool, PoolState

__all__ = [
    # decorators
    "parallel",
    "in_process",
    "ParallelFunction",
    "InProcessFunction",
    # futures and pools
    "Future",
    "Pool",
    "PoolState",
    # configuration
    "configure",
    "shutdown",
    "available_cpus",
    # errors
    "ParallelizeError",
    "WorkerCrashed",
    "TaskTimeout",
    "PoolClosed",
    "SerializationError",
    "RemoteTraceback",
]

for _name in (
    "ParallelizeError",
    "WorkerCrashed",
    "TaskTimeout",
    "PoolClosed",
    "SerializationError",
    "RemoteTraceback",
):
    globals()[_name].__module__ = __name__
