"""What goes wrong, and how it reaches you.

* A worker's exception comes back as itself (same type, same message); the worker's traceback is
  attached as ``__cause__``, a ``parallelize.RemoteTraceback``.
* An argument that cannot be pickled raises ``SerializationError`` at the call, naming the
  argument; nothing was sent, and the pool is untouched.
* A worker that dies while running a task fails that task with ``WorkerCrashed``; the pool starts
  a new worker and keeps serving.

Run it with ``python examples/errors.py``.
"""

from __future__ import annotations

import os
import signal
import threading

from parallelize import Pool, RemoteTraceback, SerializationError, WorkerCrashed, parallel


@parallel
def parse_age(text: str) -> int:
    age = int(text)  # raises ValueError for "forty"
    if age < 0:
        raise ValueError(f"an age cannot be negative: {age}")
    return age


@parallel
def describe(value: object, label: str) -> str:
    return f"{label}: {value!r}"


def die(how: str) -> None:
    """Kill the worker running this task, the way a crash or the OOM killer would."""
    if how == "SIGKILL":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def double(x: int) -> int:
    return 2 * x


def main() -> None:
    # 1. A worker's exception, with the worker's traceback as its cause.
    try:
        parse_age("forty").result(timeout=30)
    except ValueError as exc:
        print("worker raised:", type(exc).__name__, "-", exc)
        remote = exc.__cause__
        assert isinstance(remote, RemoteTraceback)
        print("remote traceback ends with:", remote.text.strip().splitlines()[-1])
        print("remote traceback names the function:", "in parse_age" in remote.text)

    # In a map, earlier results arrive first; the failing item raises at its own position.
    ages = parse_age.map(["31", "17", "-4", "52"])
    print("first ages:", next(ages), next(ages))
    try:
        next(ages)
    except ValueError as exc:
        print("third item raised:", exc)

    # 2. An argument that cannot be pickled: raised here, at the call, naming the argument.
    try:
        describe(threading.Lock(), "a lock")
    except SerializationError as exc:
        print("SerializationError at call time:", "argument 'value'" in str(exc))
        print("  the message:", str(exc).split(", so")[0])

    # 3. A crashing worker fails its task only; the pool replaces it and keeps serving.
    with Pool(2) as pool:
        for how in ("SIGKILL", "exit"):
            try:
                pool.submit(die, how).result(timeout=30)
            except WorkerCrashed as exc:
                print("WorkerCrashed:", str(exc).replace(str(exc.pid), "<pid>"))
        print("the pool keeps serving:", list(pool.map(double, range(5))))


if __name__ == "__main__":
    main()
