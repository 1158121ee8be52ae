"""``progress=`` on every map form, and ``MapIterator.__length_hint__`` (issue 11, "Progress").

The bar itself is checked where users see it: scripts in subprocesses whose stderr is a pipe
(tqdm draws there as on a terminal), on the default pool and an explicit one, for plain, bound
and starmap forms, and with a real Ctrl-C. The bar-of-your-own and callable forms are checked in
process against real pools: what they are told, and that they are closed on every way out.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import parallelize
from parallelize import Pool, parallel
from tests import map_tasks, method_tasks, workers
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30

SCRIPT = textwrap.dedent(
    """
    import sys
    from itertools import repeat

    import parallelize
    from parallelize import Pool
    from tests import method_tasks, workers

    if __name__ == "__main__":
        show = sys.argv[1] == "on" or None  # None: the same calls without progress=
        parallelize.configure(workers=2, start_method=sys.argv[2])
        print(sum(workers.decorated_square.map(range(300), progress=show)))
        print(sum(method_tasks.Scorer(2).score.map(range(120), progress=show)))
        print(sum(method_tasks.Scorer(1).pair.starmap([(i, i) for i in range(70)], progress=show)))
        print(sum(workers.decorated_square.map((i for i in range(40)), progress=show)))
        with Pool(2, start_method=sys.argv[2]) as pool:
            print(sum(pool.map(workers.add, iter(range(50)), repeat(1), progress=show)))
        print("done")
    """
)

# What each map of SCRIPT sums to, and the N of its bar.
SUMS = [
    sum(x * x for x in range(300)),
    2 * sum(range(120)),
    2 * sum(range(70)),
    sum(x * x for x in range(40)),
]
SUMS.append(sum(range(1, 51)))
BARS = ["300/300", "120/120", "70/70", "40/40", "50/50"]


def run_script(tmp_path: Path, source: str, *args: str) -> tuple[int, str, str]:
    """Run a script with stdout and stderr pipes (as under a CI runner, or ``2>log``); bytes,
    decoded without newline translation, which would turn tqdm's carriage returns into newlines."""
    path = tmp_path / "script.py"
    path.write_text(source)
    done = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def last_states(stderr: str) -> list[str]:
    """The last state each bar drew: tqdm redraws a line after a carriage return, and ends it
    with a newline when it is closed."""
    return [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if line.strip()]


@pytest.mark.timeout(150)
def test_each_map_form_draws_a_bar_that_ends_at_n_of_n(tmp_path: Path, start_method: str) -> None:
    code, out, err = run_script(tmp_path, SCRIPT, "on", start_method)
    assert code == 0, err
    assert out.split() == [str(s) for s in SUMS] + ["done"]
    states = last_states(err)
    assert len(states) == len(BARS), err  # one closed bar per map, nothing else
    for state, n_of_n in zip(states, BARS, strict=True):
        assert f"| {n_of_n} [" in state, state
        assert "100%" in state or n_of_n == "40/40", state  # a generator's bar counts, then ends at N/N
    assert states[0].startswith("decorated_square:"), states[0]
    assert states[1].startswith("Scorer.score:"), states[1]


@pytest.mark.timeout(150)
def test_no_bar_without_progress(tmp_path: Path) -> None:
    code, out, err = run_script(tmp_path, SCRIPT, "off", "forkserver")
    assert code == 0, err
    assert out.split() == [str(s) for s in SUMS] + ["done"]
    assert err == ""


# -- the forms a user draws with ------------------------------------------------------------------


class Recorder:
    """A bar of the user's own: what tqdm offers a map (update, close, a total it may fill in)."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.updates: list[int] = []
        self.closed = 0

    def update(self, n: int) -> None:
        assert not self.closed, "updated after close()"
        self.updates.append(n)

    def close(self) -> None:
        self.closed += 1


def test_a_callable_hears_done_and_total_up_to_n_of_n(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    values = list(
        pool.map(workers.square, range(2000), progress=lambda done, total: heard.append((done, total)))
    )
    assert values == [x * x for x in range(2000)]
    assert heard[-1] == (2000, 2000)
    assert all(total == 2000 for _, total in heard)
    counts = [done for done, _ in heard]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)  # told only when it moves


def test_a_decorated_function_on_the_default_pool_reports_to_a_bar(default_start_method: str) -> None:
    bar = Recorder()
    assert list(workers.decorated_square.map(range(500), progress=bar)) == [x * x for x in range(500)]
    assert bar.total == 500  # filled in, since the bar had none
    assert sum(bar.updates) == 500
    assert bar.closed == 1


def test_unknown_length_counts_then_ends_at_the_count(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    items = (x for x in range(300))
    assert sum(pool.map(workers.square, items, progress=lambda d, t: heard.append((d, t)))) == sum(
        x * x for x in range(300)
    )
    assert all(total is None for _, total in heard[:-1])
    assert heard[-1] == (300, 300)


def test_several_iterables_count_to_the_shortest(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    list(pool.map(workers.add, range(100), range(60), progress=lambda d, t: heard.append((d, t))))
    assert heard[0][1] == 60
    assert heard[-1] == (60, 60)


def test_the_thread_and_sync_backends_report_too() -> None:
    for backend in ("thread", "sync"):
        bar = Recorder()
        square = parallel(backend=backend)(workers.square)
        assert sum(square.map(range(200), progress=bar)) == sum(x * x for x in range(200))
        assert (bar.total, sum(bar.updates), bar.closed) == (200, 200, 1), backend


# -- closed on every way out ------------------------------------------------------------------------


def test_a_bar_is_closed_on_break(pool: Pool) -> None:
    bar = Recorder()
    mapping = pool.map(workers.square, range(10_000), progress=bar)
    for _ in mapping:
        break
    assert bar.closed == 0  # the map is still open: the loop may be taken up again
    mapping.close()
    assert bar.closed == 1
    assert 0 < sum(bar.updates) < 10_000


def test_a_bar_is_closed_when_the_loop_is_dropped(pool: Pool) -> None:
    bar = Recorder()
    for _ in pool.map(workers.square, range(10_000), progress=bar):
        break
    assert bar.closed == 1  # the map went with the loop (CPython frees it at once)


def test_a_bar_is_closed_when_an_error_leaves_the_map(pool: Pool) -> None:
    bar = Recorder()
    mapping = pool.map(map_tasks.fail_every_7th, range(50), progress=bar)
    with pytest.raises(map_tasks.Every7thError, match="item 3 is refused"):
        for _ in mapping:
            pass
    assert bar.closed == 1  # at once, though the map is still referenced
    # The map goes on after the failure; a bar of one's own, once closed, is told no more.
    rest = list(itertools.islice(iter(mapping), 3))
    assert rest == [40, 50, 60]
    assert bar.closed == 1
    mapping.close()
    assert bar.closed == 1


def test_a_callable_goes_on_after_an_error_and_ends_at_n_of_n(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    results = iter(pool.map(map_tasks.fail_every_7th, range(30), progress=lambda d, t: heard.append((d, t))))
    values, errors = [], 0
    while True:
        try:
            values.append(next(results))
        except StopIteration:
            break
        except map_tasks.Every7thError:
            errors += 1
    assert errors == len([x for x in range(30) if x % 7 == 3])
    assert len(values) == 30 - errors
    assert heard[-1] == (30, 30)


def test_a_tqdm_bar_closes_at_each_error_and_a_new_one_goes_on(
    pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    results = iter(pool.map(map_tasks.fail_every_7th, range(30), progress=True))
    errors = 0
    while True:
        try:
            next(results)
        except StopIteration:
            break
        except map_tasks.Every7thError:
            errors += 1
    assert errors == 4
    states = last_states(capsys.readouterr().err)
    # One line per bar: an error ended the bar (so its traceback would start on a line of its
    # own; two errors at the same count end one bar), the next bar took over at that count, and
    # the last one ends at N/N.
    assert 2 <= len(states) <= errors + 1, states
    counts = [int(re.findall(r"\| (\d+)/30 \[", state)[0]) for state in states]
    assert counts == sorted(counts), states
    assert counts[0] < 30
    assert counts[-1] == 30


def test_a_whole_chunk_failure_closes_the_bar(pool: Pool) -> None:
    bar = Recorder()
    lock = threading.Lock()  # cannot be pickled: the chunk fails as a whole, at the call
    with pytest.raises(parallelize.SerializationError):
        list(pool.map(workers.identity, [1, lock, 3], chunksize=3, progress=bar))
    assert bar.closed == 1


def test_a_failing_display_is_logged_once_and_the_map_goes_on(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(done: int, total: int | None) -> None:
        calls.append(done)
        raise RuntimeError("the display broke")

    with caplog.at_level(logging.ERROR, logger="parallelize"):
        assert list(pool.map(workers.square, range(300), progress=broken)) == [x * x for x in range(300)]
    assert len(calls) == 1
    failures = [r for r in caplog.records if "progress display" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "the display broke" in str(failures[0].exc_info[1])


def test_a_map_never_iterated_draws_nothing(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    mapping = pool.map(workers.square, range(10), progress=lambda d, t: heard.append((d, t)))
    mapping.close()
    assert heard == []


def test_an_empty_map_ends_at_zero_of_zero(pool: Pool) -> None:
    heard: list[tuple[int, int | None]] = []
    assert list(pool.map(workers.square, [], progress=lambda d, t: heard.append((d, t)))) == []
    assert heard == [(0, 0)]


@pytest.mark.parametrize("value", ["yes", 3, object()])
def test_a_wrong_progress_fails_at_the_call(pool: Pool, value: object) -> None:
    with pytest.raises(TypeError, match=r"progress= takes True, False, None, a bar with update\(\)"):
        pool.map(workers.square, range(3), progress=value)  # type: ignore[arg-type]
    assert pool.state is parallelize.PoolState.NEW  # nothing was submitted


# -- operator.length_hint -----------------------------------------------------------------------------


def test_length_hint_counts_down_as_results_are_taken(pool: Pool) -> None:
    mapping = pool.map(workers.square, list(range(100)))
    assert operator.length_hint(mapping) == 100
    next(mapping)
    assert operator.length_hint(mapping) == 99
    rest = iter(mapping)
    for _ in range(40):
        next(rest)
    assert operator.length_hint(mapping) == 59
    mapping.close()
    assert operator.length_hint(mapping) == 0


def test_length_hint_of_each_form(pool: Pool, default_start_method: str) -> None:
    assert operator.length_hint(pool.map(workers.add, range(10), range(7))) == 7
    assert operator.length_hint(workers.decorated_square.map(iter(range(12)))) == 12
    assert operator.length_hint(method_tasks.Scorer(1).pair.starmap([(1, 2)] * 5)) == 5
    # unknown: the default of operator.length_hint
    assert operator.length_hint(pool.map(workers.square, (x for x in range(5))), -1) == -1
    assert list(pool.map(workers.square, range(3))) == [0, 1, 4]


# -- Ctrl-C, a real SIGINT ------------------------------------------------------------------------------

CTRL_C_SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    from itertools import repeat

    from parallelize import Pool
    from tests import fault_tasks

    if __name__ == "__main__":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as under a terminal
        with Pool(2) as pool:
            items = range(4), repeat(sys.argv[1])
            for value in pool.map(fault_tasks.first_fast, *items, chunksize=1, progress=True):
                print("value", value, flush=True)  # item 0 (the others hang)
    """
)


@pytest.fixture
def session_script(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:  # a failed test leaves nothing running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=WAIT)


@pytest.mark.timeout(90)
def test_ctrl_c_closes_the_bar_before_the_traceback(
    tmp_path: Path, session_script: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "script.py"
    path.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(path), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    session_script.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"value 0\n"
    wait_until((tmp_path / "1").exists, WAIT, "item 1 to start")  # then the script waits for it
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C as a terminal sends it: the whole group
    out, raw = proc.communicate(timeout=WAIT)
    err = raw.decode()
    assert proc.returncode == -signal.SIGINT, err
    assert out == b""
    assert "KeyboardInterrupt" in err
    # The bar was closed (its line ended) before the traceback was printed, at 1 of 4.
    bar, _ = err.split("Traceback (most recent call last):", 1)
    assert bar.endswith("\n"), err
    assert re.search(r"first_fast: +25%\|.*\| 1/4 \[", last_states(bar)[-1]), err
