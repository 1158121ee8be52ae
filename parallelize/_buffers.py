"""What goes out of band: which parts of a message are large buffers, and how they leave the pickle.

``_serialize.dumps_shared`` asks ``measure`` whether a message holds enough buffer bytes to be
worth a shared-memory segment (``_shm``), ``wrap``s the bytes and bytearrays the C pickler would
otherwise copy into the pickle, and pickles memoryviews with ``reduce_memoryview``.

The C pickler never calls reducer_override for exact bytes and bytearray (it has fast paths for
them), so those are wrapped before pickling, as deep as ``measure`` looks. memoryview (which plain
pickle refuses) goes through reducer_override at any depth; numpy arrays hand their buffer out of
band by themselves under protocol 5.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["MIN_BUFFER", "THRESHOLD", "in_band", "measure", "only_atoms", "reduce_memoryview", "wrap"]

# A message shares its buffers when those of at least MIN_BUFFER bytes add up to THRESHOLD. Below
# a few hundred KiB the pipe is as fast (its copies stay in cache, and a segment costs a handful of
# system calls and a tracker message on each side); from 1 MiB on, shared memory wins clearly (see
# the README). Smaller buffers in a shared message stay inside the pickle.
THRESHOLD = 1 << 20
MIN_BUFFER = 64 << 10

_ATOMS = frozenset({int, float, str, bool, type(None), complex, type})
_SAMPLE = 4  # items of a long list or tuple that ``measure(sample=True)`` looks at


def only_atoms(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True for the common call: numbers, strings and the like only (the cheapest check there is)."""
    for value in args:
        if type(value) not in _ATOMS:
            return False
    return not kwargs or all(type(value) in _ATOMS for value in kwargs.values())


def measure(obj: Any, depth: int, sample: bool = False) -> int:
    """Bytes in the large buffers of ``obj`` and its containers down to ``depth`` levels.

    This runs on every task, so it allocates nothing and does little more than a type check per
    element (exact types: a subclass may pickle itself its own way); with ``sample``, it looks at
    the first few items of long lists only (a map chunk of 10,000 items costs what one of 4 does).
    A memoryview always counts as THRESHOLD: only the buffer pickler can send one.
    """
    cls = type(obj)
    if cls in _ATOMS:
        return 0
    if cls is tuple or cls is list or cls is dict:
        if depth <= 0:
            return 0
        total = 0
        if cls is dict:
            obj = obj.values()
        elif sample and len(obj) > _SAMPLE:
            obj = obj[:_SAMPLE]
        for item in obj:
            if type(item) not in _ATOMS:
                total += measure(item, depth - 1, sample)
        return total
    if cls is bytes or cls is bytearray:
        size = len(obj)
    elif cls is memoryview:
        size = max(obj.nbytes, THRESHOLD)
    elif hasattr(cls, "__array_interface__"):  # numpy and compatible arrays
        size = getattr(obj, "nbytes", 0)
    else:
        return 0
    return size if isinstance(size, int) and size >= MIN_BUFFER else 0


def wrap(obj: Any, depth: int, copied: set[int]) -> Any:
    """``obj`` with its large bytes and bytearrays (down to ``depth``) wrapped to go out of band;
    their ids go into ``copied`` (the receiver copies them out: see the spare segments)."""
    cls = type(obj)
    if cls is bytes or cls is bytearray:
        if len(obj) < MIN_BUFFER:
            return obj
        copied.add(id(obj))
        return _OutOfBand(obj)
    if depth > 0:
        if cls is tuple:
            return tuple(wrap(item, depth - 1, copied) for item in obj)
        if cls is list:
            return [wrap(item, depth - 1, copied) for item in obj]
        if cls is dict:
            return {key: wrap(value, depth - 1, copied) for key, value in obj.items()}
    return obj


class _OutOfBand:
    __slots__ = ("buffer",)

    def __init__(self, buffer: bytes | bytearray) -> None:
        self.buffer = buffer

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self.buffer), (pickle.PickleBuffer(self.buffer),))


def reduce_memoryview(obj: object) -> tuple[Any, ...] | None:
    """How a memoryview travels: its bytes out of band, then the same format and shape again."""
    if type(obj) is not memoryview or not obj.c_contiguous:
        return None
    return (_rebuild_memoryview, (pickle.PickleBuffer(obj), obj.format, obj.shape))


def _rebuild_memoryview(data: Any, fmt: Any, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(data).cast("B")
    return view if fmt == "B" and len(shape) == 1 else view.cast(fmt, shape)


def in_band(_: pickle.PickleBuffer) -> bool:
    return True
