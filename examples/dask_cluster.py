"""The same decorators on a dask.distributed cluster.

Run it with ``python examples/dask_cluster.py`` (needs ``pip install 'parallelize[dask]'``): with
no address it starts an embedded LocalCluster, one worker process per CPU, and closes it at the
end. Point it at a running cluster with no code change::

    PARALLELIZE_DASK_ADDRESS=tcp://127.0.0.1:8786 python examples/dask_cluster.py

(the workers must be able to import parallelize; the functions below travel by value).
"""

from __future__ import annotations

import os

import parallelize
from parallelize import TaskTimeout, in_process, parallel

WORDS = ["dask", "runs", "the", "same", "decorated", "functions"]


@parallel(backend="dask")
def shout(word: str) -> str:
    return word.upper() + "!"


@parallel(backend="dask")
def cube(x: int) -> int:
    return x**3


@in_process(backend="dask")
def worker_pid() -> int:
    return os.getpid()


@parallel(backend="dask")
def parse(text: str) -> int:
    return int(text)


@parallel(backend="dask", timeout=1)
def spin() -> None:
    while True:
        pass


def main() -> None:
    futures = [shout(word) for word in WORDS]  # parallelize.Future[str]s, computed on the cluster
    print("futures:", [future.result() for future in futures])
    print("sum of cubes:", sum(cube.map(range(100_000))))  # lazy, ordered, chunked by measured time
    print("in_process ran elsewhere:", worker_pid() != os.getpid())
    try:
        parse("forty").result()
    except ValueError as exc:  # your own exception type, with the worker's traceback as its cause
        print("worker raised:", type(exc).__name__, "-", exc)
    try:
        spin().result()
    except TaskTimeout:  # dask has no per-task timeout: parallelize restarts the worker
        print("timeout: TaskTimeout, the worker was restarted")
    print("after the timeout:", cube(3).result())
    parallelize.shutdown()  # closes the embedded cluster (never one we did not start)


if __name__ == "__main__":
    main()
