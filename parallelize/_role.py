"""Which side of a pool this process is on, and the workers' entry point.

Both sides import this module, and through it nothing of the other side: the parent names
``run_worker`` as its workers' ``Process`` target without importing the worker's loop (and what
that imports: output forwarding, ctypes), and the decorators ask ``IN_WORKER`` without it either.
The forkserver preloads ``_worker`` itself, so its workers find the loop already imported.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ._initializer import Initializer

__all__ = ["IN_WORKER", "run_worker"]

# True in a worker process (set by run_worker, before the loop starts). Decorated functions called
# there run inline rather than start a pool of their own inside the pool (see _config).
IN_WORKER = False


def run_worker(
    tasks: Connection, results: Connection, initializer: Initializer | None, levels: bytes | None = None
) -> None:
    """The target of every worker's ``multiprocessing.Process``: the loop in ``_worker.run``."""
    global IN_WORKER
    IN_WORKER = True
    from ._worker import run  # _worker does not import this module: no cycle

    run(tasks, results, initializer, levels)
