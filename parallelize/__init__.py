"""parallelize: multiprocessing that feels like calling a function.

    @parallel
    def score(doc: str) -> float: ...

    futures = [score(d) for d in docs]   # Future[float]s computed in worker processes
    totals = list(score.map(docs))       # lazy, ordered, chunked automatically

See README.md for the tour. Public names are re-exported here; the modules behind them are
private (underscored) and may change.

The re-exports are lazy (PEP 562): every worker process imports this package before it can import
``parallelize._worker``, and the public layer (wrapt, which imports asyncio; concurrent.futures;
the dispatcher) would triple a worker's start-up time for nothing.
"""

from __future__ import annotations

import importlib

from . import _fork  # noqa: F401 - registers the one at-fork hook (see _fork)

TYPE_CHECKING = False  # not typing's: importing typing is most of what `import parallelize` cost
if TYPE_CHECKING:
    from typing import Any

    from ._config import configure, restart, shutdown, stats
    from ._decorators import InProcessFunction, ParallelFunction, in_process, parallel
    from ._errors import (
        ParallelizeError,
        PoolBroken,
        PoolClosed,
        RemoteTraceback,
        SerializationError,
        TaskTimeout,
        WorkerCrashed,
    )
    from ._futures import Future
    from ._mapping import MapIterator
    from ._pool import Pool, PoolState
    from ._settings import available_cpus
    from ._stats import PoolStats

__all__ = [
    # decorators
    "parallel",
    "in_process",
    "ParallelFunction",
    "InProcessFunction",
    # futures and pools
    "Future",
    "MapIterator",
    "Pool",
    "PoolState",
    "PoolStats",
    "stats",
    # configuration
    "configure",
    "shutdown",
    "restart",
    "available_cpus",
    # errors
    "ParallelizeError",
    "WorkerCrashed",
    "TaskTimeout",
    "PoolClosed",
    "PoolBroken",
    "SerializationError",
    "RemoteTraceback",
]

_HOME = {
    "parallel": "_decorators",
    "in_process": "_decorators",
    "ParallelFunction": "_decorators",
    "InProcessFunction": "_decorators",
    "Future": "_futures",
    "MapIterator": "_mapping",
    "Pool": "_pool",
    "PoolState": "_pool",
    "PoolStats": "_stats",
    "stats": "_config",
    "configure": "_config",
    "shutdown": "_config",
    "restart": "_config",
    "available_cpus": "_settings",
    "ParallelizeError": "_errors",
    "WorkerCrashed": "_errors",
    "TaskTimeout": "_errors",
    "PoolClosed": "_errors",
    "PoolBroken": "_errors",
    "SerializationError": "_errors",
    "RemoteTraceback": "_errors",
}


if not TYPE_CHECKING:  # a module __getattr__ would make every misspelt import Any to mypy

    def __getattr__(name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module 'parallelize' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"parallelize.{home}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
