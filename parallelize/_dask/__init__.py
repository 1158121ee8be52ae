"""The dask.distributed backend (``@parallel(backend="dask")``, ``PARALLELIZE_BACKEND=dask``).

Imported only when the dask backend is first used: ``import parallelize`` never imports dask.
``_backend`` runs tasks and keeps parallelize's semantics; ``_wire`` is what crosses to a worker
(and runs there); ``_cluster`` finds or starts the cluster.
"""

from __future__ import annotations

from ._backend import DaskBackend

__all__ = ["DaskBackend"]
