"""Every script in examples/ runs as a user would run it, and prints the right values.

Each example runs in a fresh interpreter (``python examples/NAME.py`` from the repository root),
so its functions live in ``__main__`` and its workers start exactly as a user's would. The
expected values are computed here independently, from the example's inputs: a check passes only
if the work really crossed to the workers and came back right.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import parallelize

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Each example finishes in a few seconds; this bound only turns a hang into a clear failure.
SCRIPT_TIMEOUT = 45


def run_example(name: str, **env: str) -> str:
    """Run ``examples/<name>.py``; return its stdout after checking it exited cleanly."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELIZE_")}
    environment.update(env)
    try:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"examples/{name}.py hung{_output(exc.stdout, exc.stderr)}")
    report = f"examples/{name}.py exited with {proc.returncode}{_output(proc.stdout, proc.stderr)}"
    assert proc.returncode == 0, report
    if name in STDERR_CHECKS:
        STDERR_CHECKS[name](proc.stderr)
    else:
        assert proc.stderr == "", report
    return proc.stdout


def _output(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    def text(stream: str | bytes | None) -> str:
        return stream.decode(errors="replace") if isinstance(stream, bytes) else stream or ""

    return f"\n--- stdout\n{text(stdout)}--- stderr\n{text(stderr)}"


def inputs_of(name: str) -> dict[str, Any]:
    """The example's module globals, loaded without running it (its __main__ guard holds)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def lines(stdout: str) -> dict[str, str]:
    """'label: value' lines as {label: value}."""
    found = {}
    for line in stdout.splitlines():
        label, sep, rest = line.partition(":")
        if sep:
            found[label.strip()] = rest.strip()
    return found


def value(stdout: str, label: str) -> Any:
    """The Python literal printed after ``label:``."""
    printed = lines(stdout)
    assert label in printed, f"no {label!r} line in:\n{stdout}"
    return ast.literal_eval(printed[label])


# -- the checks, one per example ----------------------------------------------------------------------


def check_quickstart(stdout: str) -> None:
    docs: list[str] = inputs_of("quickstart")["DOCS"]
    diversity = [round(len(set(doc.split())) / len(doc.split()), 3) for doc in docs]
    assert value(stdout, "futures") == diversity
    assert value(stdout, "map") == diversity
    assert lines(stdout)["longest word"] == max(docs[3].split(), key=len)
    assert value(stdout, "in_process ran in another process") is True
    assert value(stdout, "in this process") == diversity[0]


def primes_below(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\0\0"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, limit, n)))
    return sum(sieve)


def check_cpu_bound(stdout: str) -> None:
    limits: list[int] = inputs_of("cpu_bound")["LIMITS"]
    assert value(stdout, "primes below each limit") == [primes_below(limit) for limit in limits]
    assert value(stdout, "same as serial") is True
    # No bound on the speed-up itself: it depends on how busy the machine is.
    match = re.search(r"^speed-up: (\d+\.\d\d)x with (\d+) workers$", stdout, re.MULTILINE)
    assert match, stdout
    assert float(match[1]) > 0
    assert int(match[2]) == parallelize.available_cpus()


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def sha256_rounds(text: str, rounds: int) -> str:
    data = text.encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


def check_asyncio_gather(stdout: str) -> None:
    assert lines(stdout)["digest"] == sha256_rounds("parallelize", 20_000)
    numbers = [27, 97, 871, 6171, 77031]
    assert value(stdout, "collatz steps") == {n: collatz_steps(n) for n in numbers}
    assert value(stdout, "with wait_for") == collatz_steps(837_799)
    assert value(stdout, "digests") == [sha256_rounds(word, 50_000) for word in "abcd"]
    assert value(stdout, "event loop stayed responsive") is True
    assert value(stdout, "async for total") == sum(collatz_steps(n) for n in range(1, 2001))
    assert value(stdout, "outcomes") == [1.0, "ZeroDivisionError", 0.25]


def check_seed_multiprocessing(stdout: str) -> None:
    assert stdout.splitlines()[:2] == ["hello bob", "hello alice"]
    assert value(stdout, "squares") == [x * x for x in range(10)]
    assert value(stdout, "apply") == 16
    base: dict[str, float] = inputs_of("seed_multiprocessing")["BASE_PRICES"]
    assert value(stdout, "prices in USD") == [
        round(base[item] * 1.25, 2) for item in ("apple", "pear", "plum")
    ]
    assert value(stdout, "the initializer ran in the workers only") is True


def check_errors(stdout: str) -> None:
    printed = lines(stdout)
    assert printed["worker raised"] == "ValueError - invalid literal for int() with base 10: 'forty'"
    assert (
        printed["remote traceback ends with"] == "ValueError: invalid literal for int() with base 10: 'forty'"
    )
    assert value(stdout, "remote traceback names the function") is True
    assert printed["first ages"] == "31 17"
    assert printed["third item raised"] == "an age cannot be negative: -4"
    assert value(stdout, "SerializationError at call time") is True
    assert (
        printed["the message"] == "argument 'value' (_thread.lock) of __main__.describe could not be pickled"
    )
    crashes = [line for line in stdout.splitlines() if line.startswith("WorkerCrashed:")]
    assert len(crashes) == 2, stdout
    assert "worker <pid> was killed by SIGKILL while running __main__.die('SIGKILL')" in crashes[0]
    assert "worker <pid> exited with code 3 while running __main__.die('exit')" in crashes[1]
    assert value(stdout, "the pool keeps serving") == [0, 2, 4, 6, 8]


def check_dask_cluster(stdout: str) -> None:
    words: list[str] = inputs_of("dask_cluster")["WORDS"]
    assert value(stdout, "futures") == [word.upper() + "!" for word in words]
    assert value(stdout, "sum of cubes") == sum(x**3 for x in range(100_000))
    assert value(stdout, "in_process ran elsewhere") is True
    assert lines(stdout)["worker raised"] == "ValueError - invalid literal for int() with base 10: 'forty'"
    assert lines(stdout)["timeout"] == "TaskTimeout, the worker was restarted"
    assert value(stdout, "after the timeout") == 27


def check_progress_and_logs(stdout: str) -> None:
    text: list[str] = inputs_of("progress_and_logs")["LINES"]
    counts = [len(line.split()) for line in text]
    assert value(stdout, "counts of the first five lines") == counts[:5]
    assert value(stdout, "total words") == sum(counts)
    assert value(stdout, "shouted") == "HELLO"
    # a worker's print, out of the parent's stdout before the result it came with
    assert stdout.index("a worker says HELLO") < stdout.index("shouted:")
    # each empty line's record, handled by the parent's logger with the worker named
    warnings = re.findall(r"^WARNING wordcount parallelize-worker-\d+: an empty line$", stdout, re.MULTILINE)
    assert len(warnings) == counts.count(0)
    assert value(stdout, "backend") == "process"
    assert value(stdout, "failed") == 0


def check_progress_bar(stderr: str) -> None:
    # tqdm redraws the line with carriage returns; the last drawing is the full count
    drawings = [part for part in stderr.split("\r") if part.strip()]
    assert drawings, "no progress bar on stderr"
    assert "200/200" in drawings[-1], stderr
    assert "Traceback" not in stderr


# Examples that write to stderr on purpose: what they write is checked instead of required empty.
STDERR_CHECKS: dict[str, Callable[[str], None]] = {"progress_and_logs": check_progress_bar}

CHECKS: dict[str, Callable[[str], None]] = {
    "quickstart": check_quickstart,
    "cpu_bound": check_cpu_bound,
    "asyncio_gather": check_asyncio_gather,
    "seed_multiprocessing": check_seed_multiprocessing,
    "errors": check_errors,
    "dask_cluster": check_dask_cluster,
    "progress_and_logs": check_progress_and_logs,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_example(name: str) -> None:
    CHECKS[name](run_example(name))


def test_main_script(start_method: str) -> None:
    """Functions, a class, a closure and a lambda defined in the script, on each start method."""
    stdout = run_example("main_script", PARALLELIZE_START_METHOD=start_method)
    assert value(stdout, "scaled") == [(2, 4), (6, 8), (10, 12)]
    assert value(stdout, "total area") == 2 * 4 + 6 * 8 + 10 * 12
    assert value(stdout, "in_process ran in a worker") is True
    assert value(stdout, "decorated closure") == [0, 3, 6, 9, 12]
    assert value(stdout, "closure") == 101
    assert value(stdout, "lambda") == [x * x for x in range(6)]
    assert value(stdout, "method of a script class") == 56
    assert lines(stdout)["pool"] == f"<parallelize.Pool workers=2 start_method='{start_method}' running>"


def test_every_example_is_tested() -> None:
    scripts = {path.stem for path in EXAMPLES.glob("*.py")}
    assert scripts == {*CHECKS, "main_script"}
