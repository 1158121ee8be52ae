"""Start-up and latency figures of parallelize beside ProcessPoolExecutor, measured in one run.

    python benchmarks/core.py [--rounds 7] [--round-trips 2000]

Three figures, each for parallelize and for concurrent.futures.ProcessPoolExecutor with the same
start method (forkserver on Linux) and 2 workers:

* import time: measured inside a fresh interpreter around ``import parallelize`` and around
  ``from parallelize import parallel`` (which imports wrapt); for the peer around
  ``from concurrent.futures import ProcessPoolExecutor``;
* first result: a fresh interpreter that imports, creates a pool, submits one no-op and gets the
  result (the time a short script waits for its first answer);
* warm round trip: ``pool.submit(noop, i).result()`` in a loop, once the workers are up.

Rounds are interleaved (ours, peer, ours, peer, ...) so that machine noise hits both alike; the
table shows medians and our ratio to the peer. This machine is shared and noisy: read ratios, not
absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _tasks import noop  # noqa: E402 - the workers import it by name from this folder

START_METHOD = "forkserver" if sys.platform.startswith("linux") else "spawn"

IMPORT_SNIPPETS = {
    "parallelize": "import parallelize",
    "parallelize (decorators)": "from parallelize import parallel",
    "ProcessPoolExecutor": "from concurrent.futures import ProcessPoolExecutor",
}

FIRST_RESULT = {
    "parallelize": (
        "import parallelize\n"
        "with parallelize.Pool(2, start_method={method!r}) as pool:\n"
        "    pool.submit(noop, 1).result()\n"
        "    print(time.perf_counter() - start)\n"
    ),
    "ProcessPoolExecutor": (
        "import multiprocessing\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context({method!r})) as pool:\n"
        "    pool.submit(noop, 1).result()\n"
        "    print(time.perf_counter() - start)\n"
    ),
}


def _python(code: str) -> float:
    """Run ``code`` in a fresh interpreter; it prints seconds, or we time the whole run."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a real install has byte code; measure that
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    elapsed = time.perf_counter() - started
    return float(out.stdout) if out.stdout.strip() else elapsed


def import_time(snippet: str) -> float:
    code = f"import time\nstart = time.perf_counter()\n{snippet}\nprint(time.perf_counter() - start)\n"
    return _python(code)


def first_result(which: str) -> float:
    body = FIRST_RESULT[which].format(method=START_METHOD)
    code = "import time\nstart = time.perf_counter()\nfrom _tasks import noop\nif __name__ == '__main__':\n"
    code += "".join(f"    {line}\n" for line in body.splitlines())
    return _python(code)


def round_trip(which: str, count: int) -> float:
    if which == "parallelize":
        import parallelize

        pool: object = parallelize.Pool(2, start_method=START_METHOD)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(START_METHOD))
    submit = pool.submit  # type: ignore[attr-defined]
    for i in range(20):  # both workers up and warm
        submit(noop, i).result()
    times = []
    for i in range(count):
        started = time.perf_counter()
        submit(noop, i).result()
        times.append(time.perf_counter() - started)
    pool.shutdown()  # type: ignore[attr-defined]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()

    imports: dict[str, list[float]] = {name: [] for name in IMPORT_SNIPPETS}
    firsts: dict[str, list[float]] = {name: [] for name in FIRST_RESULT}
    trips: dict[str, list[float]] = {name: [] for name in FIRST_RESULT}
    for _ in range(args.rounds):
        for name, snippet in IMPORT_SNIPPETS.items():
            imports[name].append(import_time(snippet))
        for name in FIRST_RESULT:
            firsts[name].append(first_result(name))
        for name in FIRST_RESULT:
            trips[name].append(round_trip(name, args.round_trips))

    def med(values: list[float]) -> float:
        return statistics.median(values) * 1000

    print(
        f"python {sys.version.split()[0]}, start method {START_METHOD}, 2 workers, "
        f"{args.rounds} rounds, medians"
    )
    print(f"{'':34} {'parallelize':>14} {'ProcessPoolExecutor':>20} {'ratio':>7}")
    ours_import = med(imports["parallelize"])
    ours_decorators = med(imports["parallelize (decorators)"])
    peer_import = med(imports["ProcessPoolExecutor"])
    print(f"{'import (ms)':34} {ours_import:14.1f} {peer_import:20.1f} {ours_import / peer_import:7.2f}")
    print(
        f"{'import + decorators (ms)':34} {ours_decorators:14.1f} {peer_import:20.1f} "
        f"{ours_decorators / peer_import:7.2f}"
    )
    ours, peer = med(firsts["parallelize"]), med(firsts["ProcessPoolExecutor"])
    print(f"{'first result, fresh process (ms)':34} {ours:14.1f} {peer:20.1f} {ours / peer:7.2f}")
    ours, peer = med(trips["parallelize"]) * 1000, med(trips["ProcessPoolExecutor"]) * 1000
    print(f"{'warm round trip (us)':34} {ours:14.0f} {peer:20.0f} {ours / peer:7.2f}")


if __name__ == "__main__":
    main()
