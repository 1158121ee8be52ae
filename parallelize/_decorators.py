"""``@parallel`` and ``@in_process``: the decorators, bare or with options, and their typing.

They validate the options once, at decoration, and wrap the function in one of the classes of
``_decorated`` (plain, staticmethod or classmethod variant). ``@parallel(4)`` and the like get a
hint naming the keyword that was probably meant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from ._decorated import (
    InProcessClassMethod,
    InProcessFunction,
    InProcessStaticMethod,
    ParallelClassMethod,
    ParallelFunction,
    ParallelStaticMethod,
    _Decorated,
    _Options,
)
from ._task import make_options

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["InProcessFunction", "ParallelFunction", "in_process", "parallel"]

P = ParamSpec("P")
R = TypeVar("R")


class _ParallelDecorator(Protocol):
    @overload
    def __call__(self, function: staticmethod[P, R], /) -> ParallelStaticMethod[P, R]: ...
    @overload
    def __call__(self, function: classmethod[Any, P, R], /) -> ParallelClassMethod[P, R]: ...
    @overload
    def __call__(self, function: Callable[P, R], /) -> ParallelFunction[P, R]: ...


class _InProcessDecorator(Protocol):
    @overload
    def __call__(self, function: staticmethod[P, R], /) -> InProcessStaticMethod[P, R]: ...
    @overload
    def __call__(self, function: classmethod[Any, P, R], /) -> InProcessClassMethod[P, R]: ...
    @overload
    def __call__(self, function: Callable[P, R], /) -> InProcessFunction[P, R]: ...


def _decorate(function: object, options: _Options, kinds: tuple[type[_Decorated[Any, Any]], ...]) -> Any:
    """Make the decorated form; ``kinds``: the plain, staticmethod and classmethod classes."""
    if isinstance(function, staticmethod):
        return kinds[1](function.__func__, options)
    if isinstance(function, classmethod):
        return kinds[2](function.__func__, options)
    return kinds[0](function, options)  # type: ignore[arg-type]


_PARALLEL_KINDS = (ParallelFunction, ParallelStaticMethod, ParallelClassMethod)
_IN_PROCESS_KINDS = (InProcessFunction, InProcessStaticMethod, InProcessClassMethod)


@overload
def parallel(function: staticmethod[P, R], /) -> ParallelStaticMethod[P, R]: ...
@overload
def parallel(function: classmethod[Any, P, R], /) -> ParallelClassMethod[P, R]: ...
@overload
def parallel(function: Callable[P, R], /) -> ParallelFunction[P, R]: ...
@overload
def parallel(
    *,
    workers: int | None = None,
    pool: Pool | None = None,
    backend: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> _ParallelDecorator: ...
def parallel(
    function: Callable[..., Any] | classmethod[Any, Any, Any] | None = None,
    /,
    *,
    workers: int | None = None,
    pool: Pool | None = None,
    backend: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> ParallelFunction[..., Any] | _ParallelDecorator:
    """Run the function's calls in worker processes; each call returns a ``Future``.

    ``workers=n`` caps how many calls of this function run at once (the pool is still shared);
    ``pool=`` runs them on an explicit ``Pool``; ``backend=`` picks "process", "thread" or "sync".
    ``timeout`` bounds each call's running time (its worker is stopped and replaced, the future
    raises TaskTimeout); ``retries`` re-runs a call after WorkerCrashed, TaskTimeout or one of the
    ``retry_on`` exceptions.

    An ``async def`` runs too: a worker runs each call's coroutine in a fresh event loop
    (``asyncio.run``), and the future holds what it returns (``Future[R]`` for ``-> R``).
    """
    if function is not None and not callable(function) and not isinstance(function, classmethod):
        raise _not_a_function("parallel", function)
    if pool is not None and backend is not None:
        raise TypeError("pass pool= or backend=, not both")
    options = _Options(
        workers=workers, pool=pool, backend=backend, task=make_options(timeout, retries, retry_on)
    )
    if function is not None:
        return _decorate(function, options, _PARALLEL_KINDS)  # type: ignore[no-any-return]

    def decorate(function: Callable[P, R], /) -> ParallelFunction[P, R]:
        return _decorate(function, options, _PARALLEL_KINDS)  # type: ignore[no-any-return]

    return decorate  # type: ignore[return-value]


@overload
def in_process(function: staticmethod[P, R], /) -> InProcessStaticMethod[P, R]: ...
@overload
def in_process(function: classmethod[Any, P, R], /) -> InProcessClassMethod[P, R]: ...
@overload
def in_process(function: Callable[P, R], /) -> InProcessFunction[P, R]: ...
@overload
def in_process(
    *,
    pool: Pool | None = None,
    backend: str | None = None,
    isolated: bool = False,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> _InProcessDecorator: ...
def in_process(
    function: Callable[..., Any] | classmethod[Any, Any, Any] | None = None,
    /,
    *,
    pool: Pool | None = None,
    backend: str | None = None,
    isolated: bool = False,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> InProcessFunction[..., Any] | _InProcessDecorator:
    """Run each call in a worker process and return its value: the signature stays the same.

    ``isolated=True`` gives every call a fresh process of its own, gone when the call returns; a
    crash there raises WorkerCrashed. ``timeout``, ``retries`` and ``retry_on`` work as for
    ``@parallel``.

    On an ``async def`` the call stays awaitable, as the signature says: ``await f(x)`` runs the
    coroutine in a worker (in a fresh event loop) without blocking the caller's event loop.
    """
    if function is not None and not callable(function) and not isinstance(function, classmethod):
        raise _not_a_function("in_process", function)
    if sum((pool is not None, backend is not None, isolated)) > 1:
        raise TypeError("pass at most one of pool=, backend= and isolated=True")
    options = _Options(
        pool=pool, backend=backend, isolated=isolated, task=make_options(timeout, retries, retry_on)
    )
    if function is not None:
        return _decorate(function, options, _IN_PROCESS_KINDS)  # type: ignore[no-any-return]

    def decorate(function: Callable[P, R], /) -> InProcessFunction[P, R]:
        return _decorate(function, options, _IN_PROCESS_KINDS)  # type: ignore[no-any-return]

    return decorate  # type: ignore[return-value]


def _not_a_function(name: str, argument: object) -> TypeError:
    """``@parallel(4)`` and the like: say which keyword was probably meant."""
    if name == "parallel" and isinstance(argument, int) and not isinstance(argument, bool):
        hint = f"did you mean `@parallel(workers={argument})`?"
    elif isinstance(argument, str):
        hint = f"did you mean `@{name}(backend={argument!r})`?"
    elif type(argument).__name__ == "Pool":
        hint = f"did you mean `@{name}(pool=...)`?"
    else:
        hint = "its options are keyword arguments"
    return TypeError(f"`@{name}({argument!r})`: {hint} (@{name} takes a function, or options by keyword)")


for _public in (ParallelFunction, InProcessFunction, parallel, in_process):
    _public.__module__ = "parallelize"
