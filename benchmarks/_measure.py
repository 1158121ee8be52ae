"""What each row measures, for one pool (or the bare pipes) in one round.

A group of rows is measured by one function ``measure_<group>(column, session, out)`` that fills
``out`` (row key -> value) as it goes, so that a pool failing half-way keeps the rows it finished.
In-process groups open a fresh pool, wait until every worker has run a task, measure, and shut the
pool down; the cold, memory and import groups run a fresh interpreter each time.

Every blocking call has a timeout, and every measurement runs under a deadline (SIGALRM) that
interrupts even the calls that take none (a map iterator, a pool's join).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import _peers
from _baseline import COLD_CODE, BarePipes
from _bench_tasks import KINDS, double, make, pid_after, produce, size_of, spin
from _tasks import noop

HERE = Path(__file__).resolve().parent
WAIT = 60.0  # seconds for any one result
ROW_DEADLINE = 10.0  # seconds for one row of the transfer group (one 64 MiB payload takes < 2 s)


class Plan(NamedTuple):
    """Sizes of one run."""

    mode: str
    rounds: int
    round_trips: int
    submits: int
    map_items: int
    payload: int  # bytes
    cpu_tasks: int
    cpu_seconds: float  # per task
    pending: int  # futures submitted and not yet run, for the memory-per-future row


PLANS = {
    "full": Plan("full", 7, 1000, 20_000, 200_000, 64 * 2**20, 40, 0.05, 1_000_000),
    "quick": Plan("quick", 3, 300, 5_000, 50_000, 16 * 2**20, 20, 0.05, 200_000),
    "smoke": Plan("smoke", 1, 50, 500, 5_000, 2**20, 4, 0.02, 5_000),
}


# -- deadlines --------------------------------------------------------------------------------------


class Overrun(Exception):
    """A measurement ran past its deadline (raised from SIGALRM in the main thread)."""


_deadlines: list[float] = []  # monotonic times, innermost last; the earliest one is armed


def _arm() -> None:
    if not hasattr(signal, "setitimer"):
        return
    if not _deadlines:
        signal.setitimer(signal.ITIMER_REAL, 0)
        return
    signal.setitimer(signal.ITIMER_REAL, max(min(_deadlines) - time.monotonic(), 0.001))


def _on_alarm(signum: int, frame: object) -> None:
    raise Overrun("ran past its deadline")


def install_alarm() -> None:
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _on_alarm)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    _deadlines.append(time.monotonic() + seconds)
    _arm()
    try:
        yield
    finally:
        _deadlines.pop()
        _arm()


# -- pools ------------------------------------------------------------------------------------------


class Session:
    """What a group function gets: the plan, the group's shared data, and where row failures go."""

    def __init__(self, plan: Plan, shared: dict[str, Any], notes: list[str]) -> None:
        self.plan = plan
        self.shared = shared
        self.notes = notes  # remarks for the report, shared by the whole run
        self.failures: dict[str, str] = {}  # row key -> why that row is n/a for this column
        self.skip: set[str] = set()  # rows that failed in an earlier round: not tried again


@contextlib.contextmanager
def opened(key: str, limit: float, notes: list[str]) -> Iterator[_peers.Adapter]:
    """A warm pool (every worker has run a task) that is shut down afterwards, whatever happens."""
    adapter = _peers.make_for_rows(key)
    clean = False
    try:
        with deadline(limit):
            adapter.open()
            adapter.warm()
            yield adapter
        clean = True
    finally:
        if adapter.pool is not None:
            _shut(adapter, clean, notes)


def _shut(adapter: _peers.Adapter, clean: bool, notes: list[str]) -> None:
    if clean:
        try:
            with deadline(30):
                adapter.close()
        except Exception as exc:  # noqa: BLE001 - noted; the workers are killed below
            notes.append(f"{adapter.label} did not shut down cleanly ({type(exc).__name__}: {exc})")
        else:
            return
    with contextlib.suppress(Exception), deadline(20):
        adapter.abandon()


@contextlib.contextmanager
def bare(count: int, limit: float) -> Iterator[BarePipes]:
    with deadline(limit):
        pipes = BarePipes(count)
        try:
            yield pipes
        finally:
            pipes.close()


@contextlib.contextmanager
def default_pool(start_method: str, limit: float, notes: list[str]) -> Iterator[None]:
    """parallelize's shared default pool as a user gets it (nothing configured), warm.

    Only where this machine's default differs from the rows' worker count or start method is the
    difference configured, and noted: configure() also takes a cost off every call (no CPU count
    to read), the cost the default-pool rows are there to show.
    """
    import parallelize

    with deadline(limit):
        parallelize.shutdown()  # a fresh default pool, and configure() is refused while one runs
        wanted: dict[str, Any] = {}
        if parallelize.available_cpus() != _peers.WORKERS:
            wanted["workers"] = _peers.WORKERS
        if start_method != _peers.Parallelize.default_method():
            wanted["start_method"] = start_method
        if wanted:
            parallelize.configure(**wanted)
            note = f"The default-pool rows ran after `parallelize.configure({_kwargs(wanted)})`."
            if note not in notes:
                notes.append(note)
        try:
            warm = parallelize.parallel(pid_after)
            seen: set[int] = set()
            while len(seen) < _peers.WORKERS:
                seen.update(f.result(timeout=WAIT) for f in [warm(0.02) for _ in range(2 * _peers.WORKERS)])
            yield
        finally:
            parallelize.shutdown(wait=True)


def _kwargs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in values.items())


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- in-process groups ------------------------------------------------------------------------------


def measure_roundtrip(column: str, s: Session, out: dict[str, float]) -> None:
    count = s.plan.round_trips
    cap = 5.0  # seconds: a slow pool gets fewer round trips, never a longer row

    def trips(*calls: Callable[[int], object]) -> list[float]:
        """Median µs per call of each; the calls take turns, so noise hits them alike."""
        times: list[list[float]] = [[] for _ in calls]
        stop = time.perf_counter() + cap * len(calls)
        for i in range(count):
            for call, spent in zip(calls, times, strict=True):
                spent.append(timed(lambda i=i, call=call: call(i)))
            if time.perf_counter() > stop and i >= 10:
                break
        return [statistics.median(spent) * 1e6 for spent in times]

    if column == "bare":
        with bare(1, 60) as pipes:
            (out["rt"],) = trips(lambda i: pipes.round_trip(WAIT))
        return
    with opened(column, 60, s.notes) as pool:
        (out["rt"],) = trips(lambda i: pool.wait(pool.submit(noop, i), WAIT))
        if column == "parallelize":
            from parallelize import parallel

            explicit = parallel(pool=pool.pool)(noop)
            default = parallel(noop)
            with default_pool(pool.start_method, 60, s.notes):
                out["rt_dec"], out["rt_default"] = trips(
                    lambda i: explicit(i).result(timeout=WAIT), lambda i: default(i).result(timeout=WAIT)
                )


def measure_submit(column: str, s: Session, out: dict[str, float]) -> None:
    count, few = s.plan.submits, s.plan.submits // 10
    if column == "bare":
        with bare(2, 120) as pipes:
            out["submit_few"] = few / timed(lambda: pipes.pipelined(few, WAIT))
            out["submit"] = count / timed(lambda: pipes.pipelined(count, WAIT))
        return

    def submit_all(submit: Callable[[int], Any], wait: Callable[[Any], object], n: int) -> float:
        def run() -> None:
            handles = [submit(i) for i in range(n)]
            for handle in handles:
                wait(handle)

        return timed(run)

    with opened(column, 180, s.notes) as pool:
        out["submit_few"] = few / submit_all(
            lambda i: pool.submit(noop, i), lambda handle: pool.wait(handle, WAIT), few
        )
        out["submit"] = count / submit_all(
            lambda i: pool.submit(noop, i), lambda handle: pool.wait(handle, WAIT), count
        )
        if column == "parallelize":
            from parallelize import parallel

            forms = {"submit_dec": parallel(pool=pool.pool)(noop), "submit_default": parallel(noop)}
            seconds = dict.fromkeys(forms, 0.0)
            with default_pool(pool.start_method, 180, s.notes):
                # Each form submits a quarter of the calls four times, in the order A B B A B A A B,
                # so that a drift of the machine's speed during the round hits both alike.
                a, b = forms
                for key in [a, b, b, a, b, a, a, b]:
                    seconds[key] += submit_all(forms[key], lambda f: f.result(timeout=WAIT), count // 4)
            for key, spent in seconds.items():
                out[key] = 4 * (count // 4) / spent


def measure_map(column: str, s: Session, out: dict[str, float]) -> None:
    items = list(range(s.plan.map_items))
    expected = [x * 2 for x in items]
    results: list[Any] = []
    if column == "bare":
        with bare(2, 120) as pipes:
            chunk = _peers.classic_chunksize(len(items))
            seconds = timed(lambda: results.extend(pipes.batched_map(items, chunk, WAIT)))
    else:
        with opened(column, 180, s.notes) as pool:
            pool.map(double, items[:100], WAIT)  # whatever a first map sets up is set up
            seconds = timed(lambda: results.extend(pool.map(double, items, 120)))
            if column == "parallelize":
                _map_with_progress(pool.pool, items, expected, out)
    if results != expected:
        raise AssertionError(f"map returned wrong results ({len(results)} items)")
    out["map"] = len(items) / seconds


def _map_with_progress(pool: Any, items: list[int], expected: list[int], out: dict[str, float]) -> None:
    """The cost of ``progress=True``: the same map with and without a bar, in the order
    A B B A B A A B so that a drift of the machine's speed hits both alike; the bar draws on
    os.devnull (a write per draw, as to a terminal, without filling the runner's stderr)."""
    seconds = {False: 0.0, True: 0.0}
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        list(pool.map(double, items[:100], progress=True))  # tqdm imported, untimed
        for show in [False, True, True, False, True, False, False, True]:
            got: list[int] = []
            seconds[show] += timed(
                lambda show=show, got=got: got.extend(pool.map(double, items, progress=show))
            )
            if got != expected:
                raise AssertionError(f"map returned wrong results ({len(got)} items)")
    out["map_plain"] = 4 * len(items) / seconds[False]
    out["map_progress"] = 4 * len(items) / seconds[True]


def measure_transfer(column: str, s: Session, out: dict[str, float]) -> None:
    from _first import measure_first  # it imports this module

    measure_first(column, s, out)
    size = s.plan.payload
    payloads: dict[str, Any] = s.shared["payloads"]
    mb = size / 1e6
    if column == "bare":
        with bare(1, 120) as pipes:
            raw = payloads["bytes"]
            pipes.fetch_payload(size, WAIT)  # the child makes its payload once, untimed
            arg = mb / timed(lambda: _expect(pipes.send_payload(raw, WAIT), size))
            result = mb / timed(lambda: _expect(len(pipes.fetch_payload(size, WAIT)), size))
            for kind in payloads:  # the same raw buffer for each kind there is a payload of
                out[f"arg_{kind}"], out[f"res_{kind}"] = arg, result
            source = payloads["bytearray"]
            out["copy"] = mb / timed(lambda: bytes(source))
        return
    with opened(column, 240, s.notes) as pool:
        pool.prepare_everywhere(size)
        # memoryview last: it cannot be pickled by most pools, and one (mpire) then hangs.
        for kind in sorted(KINDS, key=lambda k: k == "memoryview"):
            payload = payloads.get(kind)
            if payload is None:
                continue
            arg, res = f"arg_{kind}", f"res_{kind}"
            if arg not in s.skip:
                with _row_failure(s, arg):
                    out[arg] = mb / timed(
                        lambda payload=payload: _expect(pool.wait(pool.submit(size_of, payload), WAIT), size)
                    )
            if res not in s.skip:
                with _row_failure(s, res):
                    out[res] = mb / timed(
                        lambda kind=kind: _expect(
                            size_of(pool.wait(pool.submit(produce, kind, size), WAIT)), size
                        )
                    )


class RowStuck(Exception):
    """One row of a pool ran past its deadline: the pool may be stuck, so its session ends."""


@contextlib.contextmanager
def _row_failure(s: Session, row: str, limit: float = ROW_DEADLINE) -> Iterator[None]:
    """A failing row is that row's n/a (and is not tried again); the pool's other rows go on."""
    try:
        with deadline(limit):
            yield
    except Overrun:
        s.failures[row] = f"ran past {limit:g} s"
        raise RowStuck(f"{row} ran past {limit:g} s") from None
    except Exception as exc:  # noqa: BLE001 - reported as this row's n/a
        s.failures[row] = f"{type(exc).__name__}: {exc}"


def _expect(got: object, wanted: object) -> None:
    if got != wanted:
        raise AssertionError(f"expected {wanted!r}, got {got!r}")


def measure_cpu(column: str, s: Session, out: dict[str, float]) -> None:
    """The parallel time (s); the runner turns it into efficiency against the serial time."""
    turns, count = s.shared["turns"], s.plan.cpu_tasks
    if column == "bare":
        with bare(2, 120) as pipes:
            seconds = timed(lambda: pipes.spin_jobs(turns, count, WAIT))
    else:
        with opened(column, 180, s.notes) as pool:

            def run() -> None:
                handles = [pool.submit(spin, turns) for _ in range(count)]
                for handle in handles:
                    pool.wait(handle, WAIT)

            seconds = timed(run)
    out["cpu"] = seconds


def calibrate(seconds: float) -> int:
    """Loop turns of ``spin`` that take about ``seconds`` here."""
    turns = 50_000
    while (took := timed(lambda: spin(turns))) < 0.02:  # noqa: B023 - called at once, in the loop
        turns *= 2
    best = min(took, *(timed(lambda: spin(turns)) for _ in range(2)))
    return max(1, int(turns * seconds / best))


def serial_seconds(turns: int, count: int) -> float:
    """The serial time of ``count`` tasks, timed on a quarter of them (the rows use its median).

    They run one after another in one bare-pipe child, a process like the workers: this process,
    with its big heap and the threads some peers leave behind, runs the loop at another speed.
    """
    sample = max(1, count // 4)
    with bare(1, 120) as pipes:
        pipes.spin_jobs(turns, 1, WAIT)  # warm
        return timed(lambda: pipes.spin_jobs(turns, sample, WAIT)) * count / sample


def payloads(size: int) -> dict[str, Any]:
    made = {"bytes": make("bytes", size)}
    for kind in KINDS:
        with contextlib.suppress(ImportError):  # numpy is optional
            made[kind] = made.get(kind) or make(kind, size, made["bytes"])
    return made


# -- fresh-interpreter groups -----------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a real install has byte code: cache it, as one would
    return env


def run_python(code: str, timeout: float = 120, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter; it prints ``RESULT <json>`` on a line of its own."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**child_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=HERE,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"the child exited with {done.returncode}: {tail}")


def _script(body: str, prelude: str = "") -> str:
    return (
        "import time\n"
        "_start = time.perf_counter()\n"
        f"{prelude}"
        "def report(value=None):\n"
        "    import json\n"
        "    elapsed = time.perf_counter() - _start\n"
        "    print('RESULT', json.dumps(elapsed if value is None else value), flush=True)\n"
        "if __name__ == '__main__':\n" + textwrap.indent(body, "    ")
    )


def measure_cold(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare":
        out["cold_default"] = run_python(_script(COLD_CODE)) * 1000
        forkserver = (
            "import multiprocessing\n"
            "from _bench_tasks import echo_once\n"
            "context = multiprocessing.get_context('forkserver')\n"
            "mine, theirs = context.Pipe()\n"
            "child = context.Process(target=echo_once, args=(theirs,))\n"
            "child.start()\n"
            "mine.send_bytes(b'12345678')\n"
            "mine.poll(60) and mine.recv_bytes()\n"
            "report()\n"
            "child.join(60)\n"
        )
        out["cold_fs"] = run_python(_script(forkserver)) * 1000
        return
    prelude = "from _tasks import noop\n"
    default = _peers.make(column)
    out["cold_default"] = run_python(_script(default.cold_code(), prelude)) * 1000
    if default.start_method == "forkserver":
        out["cold_fs"] = out["cold_default"]
    else:
        code = _peers.make(column, "forkserver").cold_code()
        out["cold_fs"] = run_python(_script(code, prelude)) * 1000
    if column == "parallelize":
        # The path a user takes: the decorator, a function of theirs, the default pool. The peers
        # have no decorator; their figure in this row is their forkserver cold start above.
        out["cold_dec"] = run_python(_script(COLD_DECORATED), env=_WORKERS_ENV) * 1000
    else:
        out["cold_dec"] = out["cold_fs"]


COLD_DECORATED = (
    "from parallelize import parallel\n"
    "from _decorated_tasks import noop\n"
    "noop(1).result(timeout=60)\n"
    "report()\n"
)
# The default pool has a worker per usable CPU; the rows compare pools of _peers.WORKERS.
_WORKERS_ENV = {"PARALLELIZE_WORKERS": str(_peers.WORKERS)}


def measure_rss(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare":
        body = (
            "from _baseline import BarePipes\n"
            "from _peers import memory_of\n"
            "pipes = BarePipes(1)\n"
            "report([memory_of(pid) for pid in pipes.worker_pids()])\n"
            "pipes.close()\n"
        )
        _record_memory(run_python(_script(body)), out, "rss", "uss")
        return
    body = (
        "import _peers\n"
        f"pool = _peers.make({column!r}, 'forkserver')\n"
        "pool.open()\n"
        "pool.warm()\n"
        "report([_peers.memory_of(pid) for pid in pool.worker_pids()])\n"
        "pool.close()\n"
    )
    _record_memory(run_python(_script(body)), out, "rss", "uss")
    if column == "parallelize":
        # A program that uses @parallel has the forkserver import the decorators too.
        with_decorators = "from parallelize import parallel\n" + body
        _record_memory(run_python(_script(with_decorators)), out, "rss_dec", "uss_dec")


def _record_memory(
    per_worker: list[list[float | None]], out: dict[str, float], rss: str, uss: str | None
) -> None:
    if not per_worker:
        raise RuntimeError("no worker pid to read memory from")
    out[rss] = statistics.mean(float(r or 0) for r, _ in per_worker)
    if uss is not None and all(u is not None for _, u in per_worker):
        out[uss] = statistics.mean(float(u or 0) for _, u in per_worker)


IMPORTS = {
    "parallelize": "import parallelize",
    "ppe": "from concurrent.futures import ProcessPoolExecutor",
    "mp": "from multiprocessing.pool import Pool",
    "loky": "from loky import get_reusable_executor",
    "pebble": "from pebble import ProcessPool",
    "mpire": "from mpire import WorkerPool",
}
IMPORT_DECORATORS = "from parallelize import parallel"


def import_code(snippet: str) -> str:
    return _script(snippet + "\nreport()\n")


def measure_import(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare":
        return
    out["import"] = run_python(import_code(IMPORTS[column])) * 1000
    if column == "parallelize":
        out["import_dec"] = run_python(import_code(IMPORT_DECORATORS)) * 1000


def warm_imports() -> None:
    """Run every import once, untimed, so byte code is cached before the rounds."""
    for snippet in [*IMPORTS.values(), IMPORT_DECORATORS]:
        with contextlib.suppress(Exception):
            run_python(import_code(snippet))
