"""Each side imports only its own modules (issue 13: cold start and worker memory).

The parent never runs the worker loop, and a worker never runs the dispatcher, a pool or a map:
what one side imports for the other costs every cold start, and every worker's memory. Real
scripts in fresh interpreters report ``sys.modules`` at each step; the worker's list comes back as
a task's result. Under both spawn and forkserver (a forked worker is a copy of its parent).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import lifecycle_tasks

# Only a worker runs these: the loop, and the forwarding of its output and logging.
WORKER_ONLY = {"parallelize._worker", "parallelize._forward"}
# Only the parent runs these: the engine behind a pool, and the machinery of a map.
ENGINE = {
    "parallelize._pool",
    "parallelize._process",
    "parallelize._dispatcher",
    "parallelize._channel",
    "parallelize._crew",
    "parallelize._scheduler",
    "parallelize._replies",
    "parallelize._inbox",
    "parallelize._poller",
    "parallelize._outcomes",
    "parallelize._logs",
}
MAPS = {"parallelize._mapping", "parallelize._progress", "parallelize._chunking", "parallelize._unordered"}

USER_MODULE = """
import sys
from parallelize import parallel


def ours():
    return sorted(m for m in sys.modules if m == "parallelize" or m.startswith("parallelize."))


@parallel
def modules_of_the_worker():
    return ours()
"""

DECORATED_SCRIPT = """
import json
import sys

if __name__ == "__main__":
    before = set(sys.modules)
    import parallelize
    steps = {"import parallelize": sorted(set(sys.modules) - before)}
    from parallelize import parallel
    from user_tasks import modules_of_the_worker, ours
    steps["from parallelize import parallel"] = ours()
    steps["worker"] = modules_of_the_worker().result(timeout=30)
    steps["parent after the first call"] = ours()
    print(json.dumps(steps))
"""

POOL_SCRIPT = """
import json
import sys

import parallelize


def ours():
    return sorted(m for m in sys.modules if m == "parallelize" or m.startswith("parallelize."))


if __name__ == "__main__":
    with parallelize.Pool(1) as pool:
        print(json.dumps({"worker": pool.submit(ours).result(timeout=30), "parent": ours()}))
"""


def _run(script: str, start_method: str, tmp_path: Path) -> dict[str, list[str]]:
    (tmp_path / "user_tasks.py").write_text(USER_MODULE)
    (tmp_path / "main.py").write_text(script)
    done = lifecycle_tasks.run_script(["main.py"], start_method, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    steps: dict[str, list[str]] = json.loads(done.stdout)
    return steps


def test_a_decorated_call_splits_the_modules_between_parent_and_worker(
    start_method: str, tmp_path: Path
) -> None:
    steps = _run(DECORATED_SCRIPT, start_method, tmp_path)
    # `import parallelize` loads the package and its at-fork hook, nothing else (not even typing):
    # the public names are imported when first used.
    assert set(steps["import parallelize"]) - {"importlib"} == {"parallelize", "parallelize._fork"}
    decorators = set(steps["from parallelize import parallel"])
    assert "parallelize._decorated" in decorators
    assert decorators.isdisjoint(WORKER_ONLY | ENGINE | MAPS)
    parent = set(steps["parent after the first call"])
    assert "parallelize._dispatcher" in parent  # the pool started here...
    assert parent.isdisjoint(WORKER_ONLY)  # ...and the worker's loop did not
    assert parent.isdisjoint(MAPS)  # nothing mapped
    worker = set(steps["worker"])
    assert worker >= WORKER_ONLY
    assert "parallelize._decorated" in worker  # the function's module uses the decorator
    assert worker.isdisjoint(ENGINE | MAPS)


def test_a_pool_program_s_workers_import_no_decorator(start_method: str, tmp_path: Path) -> None:
    steps = _run(POOL_SCRIPT, start_method, tmp_path)
    assert set(steps["parent"]).isdisjoint(WORKER_ONLY)
    worker = set(steps["worker"])
    assert worker >= WORKER_ONLY
    assert worker.isdisjoint(ENGINE | MAPS | {"parallelize._decorated", "parallelize._config"})
