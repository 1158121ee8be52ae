"""Seeing the work: a progress bar, what workers print and log, and the pool's live counts.

A map with ``progress=True`` draws a tqdm bar on stderr (a widget in a notebook) that counts items
as their chunks finish. What a worker prints comes out of the parent's ``sys.stdout``, and what it
logs is handled by the parent's logger of the same name, with its level, handlers and format: the
record's ``processName`` says which worker. Both arrive before the result they came with.

Run it with ``python examples/progress_and_logs.py``.
"""

from __future__ import annotations

import logging
import sys

from parallelize import parallel, stats

log = logging.getLogger("wordcount")

LINES = [
    "the quick brown fox",
    "jumps over",
    "",
    "the lazy dog",
    "and runs away into the woods",
] * 40


@parallel
def count_words(line: str) -> int:
    words = len(line.split())
    if words == 0:
        log.warning("an empty line")
    return words


@parallel
def shout(word: str) -> str:
    print(f"a worker says {word.upper()}")
    return word.upper()


def main() -> None:
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s %(processName)s: %(message)s"
    )
    counts = list(count_words.map(LINES, progress=True))
    print("counts of the first five lines:", counts[:5])
    print("total words:", sum(counts))
    print("shouted:", repr(shout("hello").result(timeout=30)))
    now = stats()
    print("backend:", repr(now.backend))
    print("failed:", now.failed)


if __name__ == "__main__":
    main()
