"""A pool's initializer and its arguments, on their way to each new worker.

The function is pickled once, when the ``Pool`` is made (as it is then, like every function the
pool sends). The arguments travel one of two ways:

* **as bytes**, pickled with the package's own pickler when the ``Pool`` is made, unless they hold
  a multiprocessing object (functions and classes of ``__main__`` go by value this way, where
  multiprocessing's pickler sends them by name only);
* **by inheritance**, as multiprocessing passes a ``Process``'s arguments, when they hold an object
  that multiprocessing pickles its own way (``_Detector``): a ``Queue``, ``Lock``, ``Semaphore``,
  ``Event``, ``Value``, a ``Connection``. Some refuse any other pickle ("should only be shared
  between processes through inheritance"); others would pickle, wrongly, as a copy of a
  descriptor number. Those arguments ride along as the worker ``Process``'s own arguments, so
  multiprocessing hands them over at each worker's start, on spawn and forkserver alike (fork
  copies them). That is how ``ProcessPoolExecutor`` does it, and how the ``QueueHandler`` logging
  recipe gives every worker the one queue.

``Pool()`` still checks the second way up front: it pickles the arguments as a worker start would
(multiprocessing's pickler, inside a stand-in for a starting process that hands out no
descriptor), so a lambda, or a lock made in another start method's context, fails there with a
message naming ``initargs``, not in the dispatcher when the first worker starts.
"""

from __future__ import annotations

import copyreg
import multiprocessing.context
import pickle
from typing import Any, NamedTuple

from ._errors import SerializationError
from ._serialize import dumps, loads, resolve

__all__ = ["Initializer", "make_initializer", "run_initializer"]

# What multiprocessing objects say when pickled outside a process start (context.assert_spawning).
_INHERITANCE = "through inheritance"


class Initializer(NamedTuple):
    function: bytes  # pickled (key, definition) of the function's handle
    args: bytes | None  # the arguments pickled at Pool(), or None: they go by inheritance
    inherited: tuple[Any, ...]  # the arguments themselves when they go by inheritance


def make_initializer(
    function: Any, key: object, definition: bytes | None, initargs: tuple[Any, ...], start_method: str
) -> Initializer:
    name = getattr(function, "__qualname__", repr(function))
    pickled = dumps((key, definition))
    if not _needs_inheritance(initargs):
        try:
            return Initializer(pickled, dumps(initargs), ())
        except RuntimeError as exc:
            if _INHERITANCE not in str(exc):  # else: an object we did not recognise says so
                raise _refused(name, exc) from exc
        except Exception as exc:
            raise _refused(name, exc) from exc
    if start_method != "fork":
        _check_at_start(name, initargs)
    return Initializer(pickled, None, initargs)


def run_initializer(spec: Initializer) -> None:
    """In the worker, before its first task."""
    key, definition = loads(spec.function)
    function = loads(definition) if definition is not None else resolve(*key[1:])
    args = loads(spec.args) if spec.args is not None else spec.inherited
    function(*args)


def _refused(name: str, exc: BaseException) -> SerializationError:
    return SerializationError(
        f"Pool(initargs=...) for {name} cannot be sent to the workers: {type(exc).__name__}: {exc}; "
        f"pass arguments that pickle, or multiprocessing objects made with this pool's start "
        f"method's context (multiprocessing.get_context(method).Queue() and the like)"
    )


class _Inherit(Exception):
    pass


class _Detector(pickle.Pickler):
    """Finds objects that multiprocessing pickles its own way: its own types (locks, queues,
    events, shared values) and what it registers a reducer for (connections, sockets, shared
    ctypes). Any other pickler would copy such an object's state, and a descriptor or a
    semaphore handle copied by value means nothing in another process."""

    def reducer_override(self, obj: object) -> Any:
        from multiprocessing.reduction import ForkingPickler

        kind = type(obj)
        if kind in ForkingPickler._extra_reducers or kind.__module__.startswith("multiprocessing."):  # type: ignore[attr-defined]
            raise _Inherit
        return NotImplemented


class _Discard:
    """Where the checking pickles go: nowhere. With large buffers passed out of band (protocol 5),
    a check costs a walk over the arguments, not a copy of a model's weights."""

    @staticmethod
    def write(data: Any) -> None:
        pass


def _checking(pickler: type[pickle.Pickler]) -> pickle.Pickler:
    return pickler(_Discard(), 5, buffer_callback=lambda _: False)  # False: out of band


class _AsAtStart(pickle.Pickler):
    """multiprocessing's ForkingPickler (copyreg's reducers and its own), taking keywords."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from multiprocessing.reduction import ForkingPickler

        super().__init__(*args, **kwargs)
        self.dispatch_table = {**copyreg.dispatch_table, **ForkingPickler._extra_reducers}  # type: ignore[attr-defined]


def _needs_inheritance(initargs: tuple[Any, ...]) -> bool:
    try:
        _checking(_Detector).dump(initargs)
    except _Inherit:
        return True
    except Exception:  # noqa: BLE001 - not ours to judge here: dumps() reports it
        return False
    return False


class _CheckingPopen:
    """Stands in for a starting process while ``_check_at_start`` pickles: multiprocessing asks it
    to pass descriptors on, and it passes none (the pickle is thrown away)."""

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    @staticmethod
    def DupFd(fd: int) -> int:
        return fd


def _check_at_start(name: str, initargs: tuple[Any, ...]) -> None:
    multiprocessing.context.set_spawning_popen(_CheckingPopen())  # type: ignore[arg-type]
    try:
        _checking(_AsAtStart).dump(initargs)
    except Exception as exc:
        raise _refused(name, exc) from exc
    finally:
        multiprocessing.context.set_spawning_popen(None)
