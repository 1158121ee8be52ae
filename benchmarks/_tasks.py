"""Task functions the benchmarks send to workers (importable by name from this folder)."""


def noop(x: object) -> object:
    return x
