"""The decorated-function classes: what ``@parallel`` and ``@in_process`` return.

A decorated function is a wrapt proxy, so ``__name__``, ``__doc__``, ``inspect.signature`` and
``__wrapped__`` are the function's own. The proxy decides nothing about transport: it picks a
backend per call (its ``pool=``, its ``backend=``, or the configured default, so the default pool
is only created on first use) and hands the call to the seam in ``_backends``.

Methods. A decorated function is a descriptor that binds like a plain function (see ``_methods``):
the staticmethod and classmethod variants here are what ``@parallel`` above ``@staticmethod`` or
``@classmethod`` makes; below ``@classmethod`` it is refused, see
``_methods.refuse_under_classmethod``. The typed ``map`` / ``starmap`` live in ``_typing``; the
decorator functions themselves in ``_decorators``.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    TypeAlias,
    TypeVar,
    overload,
)

import wrapt

from . import _config, _role
from ._backends import Backend, Limited, submit_call
from ._functions import FunctionHandle, handle_for, reference_of
from ._futures import Future
from ._methods import (
    BoundInProcessFunction,
    BoundParallelFunction,
    refuse_classmethod_chaining,
    refuse_under_classmethod,
)
from ._task import NO_OPTIONS, TaskOptions, check_timeout
from ._typing import MapMethods, _InProcessMethod, _ParallelMethod

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from typing_extensions import Self  # typing.Self is 3.11+

    from ._mapping import MapIterator
    from ._pool import Pool

__all__ = [
    "InProcessClassMethod",
    "InProcessFunction",
    "InProcessStaticMethod",
    "ParallelClassMethod",
    "ParallelFunction",
    "ParallelStaticMethod",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R2 = TypeVar("R2")
S = TypeVar("S")


class _Options(NamedTuple):
    workers: int | None = None
    pool: Pool | None = None
    backend: str | None = None
    isolated: bool = False
    task: TaskOptions = NO_OPTIONS


class _Decorated(wrapt.BaseObjectProxy[Callable[P, R]], Generic[P, R]):
    """What both decorators share: options, backend choice, the function handle, pickling."""

    _parallelize_proxy = True  # lets _serialize.unwrap recognise us without importing this module

    def __init__(self, function: Callable[P, R], options: _Options) -> None:
        if not callable(function):
            raise TypeError(f"@parallel and @in_process decorate functions, not {type(function).__name__}")
        super().__init__(function)
        if options.backend is not None:
            _config.check_backend(options.backend)
        if options.workers is not None:
            _config.check_workers(options.workers)
        self._self_options = options
        self._self_coroutine = inspect.iscoroutinefunction(function)  # workers run it: asyncio.run
        self._self_task_options = options.task  # read by _task.options_of (Pool.submit of a proxy)
        self._self_handle: FunctionHandle | None = None
        self._self_limited = (
            Limited(self._unlimited_backend, options.workers) if options.workers is not None else None
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._function_handle().label}>"

    def __dir__(self) -> list[str]:
        # wrapt forwards dir() to the function; tab completion should offer submit and map too
        ours = (name for name in dir(type(self)) if not name.startswith("_"))
        return sorted({*dir(self.__wrapped__), *ours})

    def _function_handle(self) -> FunctionHandle:
        # Made on first call, not at decoration: only then is the module attribute our proxy, and
        # only then can we tell whether a worker could import the function by name.
        handle = self._self_handle
        if handle is None:
            refuse_under_classmethod(self)
            handle = self._self_handle = handle_for(self.__wrapped__)
        return handle

    def _unlimited_backend(self) -> Backend:
        options = self._self_options
        if _role.IN_WORKER:
            return _config.default_backend()  # inline in a worker (see _config.default_backend)
        if options.pool is not None:
            return options.pool._backend
        if options.backend is not None:
            return _config.backend_named(options.backend)
        return _config.default_backend()

    def _backend(self) -> Backend:
        limited = self._self_limited
        return self._unlimited_backend() if limited is None else limited.get()

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # By name when the worker can import us; otherwise rebuilt around the function, which
        # cloudpickle then sends by value (__main__, closures).
        raw = self.__wrapped__
        reference = reference_of(raw)
        if reference is not None:
            return (_import_proxy, reference[1:])
        # A pool cannot cross (it holds locks and threads) and a worker runs calls inline anyway;
        # this is how a class defined in a function travels with its decorated methods.
        return (type(self), (raw, self._self_options._replace(pool=None)))


_Async: TypeAlias = "ParallelFunction[P2, Coroutine[Any, Any, R2]]"
_AsyncType: TypeAlias = "ParallelFunction[P2, types.CoroutineType[Any, Any, R2]]"


def _import_proxy(module: str, qualname: str) -> object:
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        # In a class body, take the proxy as defined: a classmethod's would come back bound.
        defined = vars(obj).get(part) if isinstance(obj, type) else None
        obj = defined if getattr(type(defined), "_parallelize_proxy", False) else getattr(obj, part)
    return obj


class ParallelFunction(_Decorated[P, R], MapMethods[P, R]):
    """A function whose calls run in worker processes and return ``Future``\\ s.

    In a class body it binds like a function: ``obj.method(x)`` runs ``Class.method(obj, x)`` in
    a worker, ``obj`` pickled with the call. Methods: ``submit`` (the same as a call), ``map``
    and ``starmap``.
    """

    @property
    def __signature__(self) -> inspect.Signature:
        # The function's parameters, returning what a call returns: help(), IDEs and
        # inspect.signature say `-> parallelize.Future[float]` (__doc__ stays the function's).
        signature = inspect.signature(self.__wrapped__)
        returns = signature.return_annotation
        if returns is inspect.Signature.empty:
            returns = Future
        elif isinstance(returns, str):
            returns = f"parallelize.Future[{returns}]"
        else:
            returns = Future[returns]  # type: ignore[valid-type]
        return signature.replace(return_annotation=returns)

    # An async def's calls give Future[its awaited value]: self-typed overloads, because
    # decorator overloads on Callable[P, Coroutine[...]] also catch generic functions (def f(x: T)
    # -> T) in mypy. Coroutine for mypy, CoroutineType for pyright (what each infers for async def).
    @overload
    def __call__(self: _Async[P2, R2], *args: P2.args, **kwargs: P2.kwargs) -> Future[R2]: ...
    @overload
    def __call__(self: _AsyncType[P2, R2], *args: P2.args, **kwargs: P2.kwargs) -> Future[R2]: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Future[Any]:
        return submit_call(self._backend(), self._function_handle(), args, kwargs, self._self_task_options)

    @overload
    def submit(self: _Async[P2, R2], *args: P2.args, **kwargs: P2.kwargs) -> Future[R2]: ...
    @overload
    def submit(self: _AsyncType[P2, R2], *args: P2.args, **kwargs: P2.kwargs) -> Future[R2]: ...
    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
        """The same as calling the function."""
        return submit_call(self._backend(), self._function_handle(), args, kwargs, self._self_task_options)

    # For checkers, ``@parallel`` over ``@classmethod`` or ``@staticmethod`` is a plain function
    # whose first parameter is ``type[S]``, or not the instance's type: the first and last
    # overloads. (At run time those are the subclasses below.)
    @overload
    def __get__(
        self: _ParallelMethod[type[S], P2, R2], instance: None, owner: type[S], /
    ) -> BoundParallelFunction[P2, R2]: ...
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...
    @overload
    def __get__(
        self: _ParallelMethod[type[S], P2, R2], instance: S, owner: type[Any] | None = None, /
    ) -> BoundParallelFunction[P2, R2]: ...
    @overload
    def __get__(
        self: _ParallelMethod[S, P2, R2], instance: S, owner: type[Any] | None = None, /
    ) -> BoundParallelFunction[P2, R2]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Any:
        if instance is None:
            return self
        if sys.version_info < (3, 13):
            refuse_classmethod_chaining(self, instance, owner)
        return BoundParallelFunction(self, instance)

    def _map_items(
        self,
        arguments: Iterator[tuple[Any, ...]],
        chunksize: int | None,
        timeout: float | None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        from ._mapping import map_items  # on the first map: a program that never maps never loads it

        return map_items(
            self._backend(),
            self._function_handle(),
            arguments,
            chunksize,
            self._map_options(timeout),
            ordered,
            return_exceptions,
        )

    def _map_arguments(self, iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
        from ._chunking import zip_arguments

        return zip_arguments(iterables)

    def _starmap_arguments(self, iterable: Iterable[Iterable[Any]]) -> Iterator[tuple[Any, ...]]:
        return (tuple(item) for item in iterable)

    def _map_options(self, timeout: float | None) -> TaskOptions:
        options: TaskOptions = self._self_task_options
        return options if timeout is None else options._replace(timeout=check_timeout(timeout))


class ParallelStaticMethod(ParallelFunction[P, R]):
    """``@parallel`` above ``@staticmethod``: never binds."""

    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self:  # type: ignore[override]
        return self


class ParallelClassMethod(ParallelFunction[Concatenate[type[Any], P], R]):
    """``@parallel`` above ``@classmethod``: binds the class, on the class or an instance."""

    def __get__(  # type: ignore[override]
        self, instance: object, owner: type[Any] | None = None, /
    ) -> BoundParallelFunction[P, R]:
        return BoundParallelFunction(self, owner if owner is not None else type(instance))


class InProcessFunction(_Decorated[P, R]):
    """A function that runs in a worker process but is called like itself: same signature,
    same return value, the worker's exception re-raised. In a class body it binds like a
    function."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(args, kwargs)  # type: ignore[no-any-return]

    # For checkers, ``@parallel`` over ``@classmethod`` or ``@staticmethod`` is a plain function
    # whose first parameter is ``type[S]``, or not the instance's type: the first and last
    # overloads. (At run time those are the subclasses below.)
    @overload
    def __get__(
        self: _InProcessMethod[type[S], P2, R2], instance: None, owner: type[S], /
    ) -> BoundInProcessFunction[P2, R2]: ...
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...
    @overload
    def __get__(
        self: _InProcessMethod[type[S], P2, R2], instance: S, owner: type[Any] | None = None, /
    ) -> BoundInProcessFunction[P2, R2]: ...
    @overload
    def __get__(
        self: _InProcessMethod[S, P2, R2], instance: S, owner: type[Any] | None = None, /
    ) -> BoundInProcessFunction[P2, R2]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Any:
        if instance is None:
            return self
        if sys.version_info < (3, 13):
            refuse_classmethod_chaining(self, instance, owner)
        return BoundInProcessFunction(self, instance)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._self_coroutine:  # async def: the call stays awaitable (R is its coroutine type)
            return self._awaitable(args, kwargs)
        future: Future[Any]
        options = self._self_task_options
        if self._self_options.isolated:
            future = _submit_isolated(self._function_handle(), args, kwargs, options)
        else:
            future = submit_call(self._backend(), self._function_handle(), args, kwargs, options)
        return future.result()

    async def _awaitable(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handle, options = self._function_handle(), self._self_task_options
        if not self._self_options.isolated or _role.IN_WORKER:
            return await submit_call(self._backend(), handle, args, kwargs, options)
        from ._pool import Pool

        pool = Pool(1)
        try:
            return await submit_call(pool._backend, handle, args, kwargs, options)
        finally:
            pool.shutdown(wait=True)  # the call is over (or cancelled): its process exits at once


class InProcessStaticMethod(InProcessFunction[P, R]):
    """``@in_process`` above ``@staticmethod``: never binds."""

    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self:  # type: ignore[override]
        return self


class InProcessClassMethod(InProcessFunction[Concatenate[type[Any], P], R]):
    """``@in_process`` above ``@classmethod``: binds the class, on the class or an instance."""

    def __get__(  # type: ignore[override]
        self, instance: object, owner: type[Any] | None = None, /
    ) -> BoundInProcessFunction[P, R]:
        return BoundInProcessFunction(self, owner if owner is not None else type(instance))


def _submit_isolated(
    handle: FunctionHandle, args: tuple[Any, ...], kwargs: dict[str, Any], options: TaskOptions
) -> Future[Any]:
    """A fresh process for one call, gone when the call returns (for leaky or crash-prone code).

    The returned future is already done: the one-task pool has been shut down and its process
    reaped before this returns."""
    if _role.IN_WORKER:
        return submit_call(_config.default_backend(), handle, args, kwargs, options)
    from ._pool import Pool

    with Pool(1) as pool:
        future = submit_call(pool._backend, handle, args, kwargs, options)
        try:
            concurrent.futures.wait([future])
        except KeyboardInterrupt:
            future.cancel()  # stops the process; the pool's shutdown then returns promptly
            raise
    return future
