"""The future every call returns, and how a worker's exception is rebuilt in the caller.

``Future`` is a ``concurrent.futures.Future`` (so ``wait``, ``as_completed`` and every library that
takes one keep working) that can also be awaited inside a running asyncio loop. asyncio is imported
only on the first ``await``: it costs more to import than the rest of the package together.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Generator
from typing import Any, TypeVar

from ._errors import RemoteTraceback, SerializationError
from ._protocol import ErrorEnvelope
from ._serialize import loads

__all__ = ["Future", "attach_traceback", "rebuild_exception"]

R = TypeVar("R")


class Future(concurrent.futures.Future[R]):
    """The pending result of one call: ``result()`` blocks, ``await`` suspends.

    ``result()`` re-raises the worker's exception with its own type and message; the worker's
    traceback is attached as ``__cause__`` (and as a note on Python 3.11+).
    """

    def __await__(self) -> Generator[Any, None, R]:
        import asyncio

        # wrap_future cancels this future when the awaiting asyncio task is cancelled.
        return asyncio.wrap_future(self, loop=asyncio.get_running_loop()).__await__()


Future.__module__ = "parallelize"


def rebuild_exception(envelope: ErrorEnvelope, where: str) -> BaseException:
    """The exception a worker raised, rebuilt here with its remote traceback attached.

    ``where`` names the task and worker ("mod.f(3) in worker 4121"). An exception that cannot be
    unpickled here becomes a SerializationError carrying its type name, message and traceback text,
    so a broken exception class costs one task, never the pool.
    """
    data, type_name, message, traceback_text = envelope
    exc: BaseException | None = None
    problem = "could not be pickled in the worker"
    if data is not None:
        try:
            exc = loads(data)
        except Exception as error:  # noqa: BLE001 - any failure gets the stand-in below
            problem = f"could not be unpickled here ({type(error).__name__}: {error})"
    if not isinstance(exc, BaseException):
        exc = SerializationError(
            f"{where} raised {type_name}: {message}; the exception {problem}, so this error stands in for it",
            original_type=type_name,
        )
    attach_traceback(exc, traceback_text, where)
    return exc


def attach_traceback(exc: BaseException, traceback_text: str, where: str) -> None:
    exc.__cause__ = RemoteTraceback(traceback_text)
    if sys.version_info >= (3, 11):
        exc.add_note(f"raised in {where}; its traceback is the cause above")
