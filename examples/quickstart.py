"""The headline example: a decorated function, its futures, its map, and ``@in_process``.

Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import os

from parallelize import in_process, parallel

DOCS = [
    "the quick brown fox jumps over the lazy dog",
    "it was the best of times it was the worst of times",
    "to be or not to be that is the question",
    "all happy families are alike every unhappy family is unhappy in its own way",
    "call me ishmael",
]


@parallel
def score(doc: str) -> float:
    """Lexical diversity: the share of a document's words that are distinct."""
    words = doc.split()
    return len(set(words)) / len(words)


@in_process
def longest_word(doc: str) -> str:
    """Runs in a worker process, but is called like the plain function it is."""
    return max(doc.split(), key=len)


@in_process
def worker_pid() -> int:
    return os.getpid()


def main() -> None:
    # Each call returns at once with a parallelize.Future; the work runs in worker processes.
    futures = [score(doc) for doc in DOCS]
    print("futures:", [round(future.result(timeout=30), 3) for future in futures])

    # map is lazy and ordered, and chunks the input by itself.
    print("map:    ", [round(value, 3) for value in score.map(DOCS)])

    # @in_process blocks and returns the value itself.
    print("longest word:", longest_word(DOCS[3]))
    print("in_process ran in another process:", worker_pid() != os.getpid())

    # The original function is still there, to run here and now.
    print("in this process:", round(score.__wrapped__(DOCS[0]), 3))


if __name__ == "__main__":
    main()
