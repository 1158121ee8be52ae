"""Decorated methods: what ``obj.method`` is when ``method`` was decorated in a class body.

A decorated function is a descriptor that binds like a plain function, so ``obj.score(2)`` runs
``Scorer.score(obj, 2)`` in a worker, with ``obj`` pickled as the first argument of every call
(of every chunk, for a map): what the worker changes on its copy does not come back. The bound
form holds only the decorated function and the object; the call goes straight to the function's
cached handle and backend, so binding costs one small object per attribute access, like a bound
method, and nothing is resolved again per call.

The function itself still travels by reference when a worker can import it (``mod.Scorer.score``
names the raw function through the class, see ``_serialize.resolve``), by value otherwise.
"""

from __future__ import annotations

import importlib
import itertools
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._backends import submit_call
from ._typing import MapMethods

if TYPE_CHECKING:
    import inspect

    from ._decorators import InProcessFunction, ParallelFunction
    from ._futures import Future
    from ._mapping import MapIterator
    from ._task import TaskOptions

__all__ = [
    "BoundInProcessFunction",
    "BoundParallelFunction",
    "refuse_classmethod_chaining",
    "refuse_under_classmethod",
]

P = ParamSpec("P")
R = TypeVar("R")


class _Bound(Generic[P, R]):
    """A decorated function bound to an object (or, for a classmethod, to a class).

    ``__wrapped__`` is the original function bound the same way, so it runs here and now, as
    ``f.__wrapped__`` does for a decorated function. Our proxy marker lets ``Pool.submit`` and
    ``Pool.map`` take a bound form too: they run that bound original in a worker.
    """

    __slots__ = ("__func__", "__self__")

    _parallelize_proxy = True  # see _serialize.unwrap and _task.options_of

    def __init__(self, function: Any, instance: object) -> None:
        self.__func__ = function
        self.__self__ = instance

    @property
    def __wrapped__(self) -> Any:
        return types.MethodType(self.__func__.__wrapped__, self.__self__)

    @property
    def _self_task_options(self) -> TaskOptions:
        options: TaskOptions = self.__func__._self_task_options
        return options

    @property
    def __signature__(self) -> inspect.Signature:
        import inspect  # only when asked: it is slow to import

        return inspect.signature(self.__wrapped__)

    def __getattr__(self, name: str) -> Any:
        # __name__, __qualname__, __doc__ and the rest come from the function, as for a bound method.
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Bound):
            return NotImplemented
        return self.__func__ is other.__func__ and self.__self__ is other.__self__

    def __hash__(self) -> int:
        return hash((id(self.__func__), id(self.__self__)))

    def __reduce__(self) -> tuple[Any, ...]:
        # Arrives bound and decorated, as a decorated function arrives decorated.
        return (type(self), (self.__func__, self.__self__))


class BoundParallelFunction(_Bound[P, R], MapMethods[P, R]):
    """``obj.method`` for a ``@parallel`` method: calls, ``submit``, ``map`` and ``starmap`` with
    ``obj`` as the first argument."""

    __slots__ = ()

    if TYPE_CHECKING:
        __func__: ParallelFunction[..., R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        function = self.__func__
        return submit_call(
            function._backend(),
            function._function_handle(),
            (self.__self__, *args),
            kwargs,
            function._self_task_options,
        )

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """The same as calling the method."""
        function = self.__func__
        return submit_call(
            function._backend(),
            function._function_handle(),
            (self.__self__, *args),
            kwargs,
            function._self_task_options,
        )

    def _map_items(
        self,
        arguments: Iterator[tuple[Any, ...]],
        chunksize: int | None,
        timeout: float | None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        from ._mapping import map_items  # on the first map (see _decorated)

        function = self.__func__
        return map_items(
            function._backend(),
            function._function_handle(),
            arguments,
            chunksize,
            function._map_options(timeout),
            ordered,
            return_exceptions,
        )

    def _map_arguments(self, iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        # One object per chunk in the pickle (pickle's memo), not one per item.
        return zip(itertools.repeat(self.__self__), *iterables)

    def _starmap_arguments(self, iterable: Iterable[Iterable[Any]]) -> Iterator[tuple[Any, ...]]:
        bound = self.__self__
        return ((bound, *item) for item in iterable)


class BoundInProcessFunction(_Bound[P, R]):
    """``obj.method`` for an ``@in_process`` method: the call returns the value."""

    __slots__ = ()

    if TYPE_CHECKING:
        __func__: InProcessFunction[..., R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.__func__._call((self.__self__, *args), kwargs)
        return result


_UNDER_CLASSMETHOD = (
    "{label}: @classmethod above @parallel or @in_process cannot work (Python 3.13 binds the class "
    "without asking the decorated function, so .map would get the class as its first item); put "
    "the decorator above @classmethod instead:\n    @parallel\n    @classmethod\n    def ..."
)


def refuse_under_classmethod(function: Any) -> None:
    """Raise if ``function`` sits in a class body under ``@classmethod``.

    The decorator runs before ``classmethod`` wraps its result, so the earliest we can tell is
    the first use (or, before Python 3.13, the first attribute access, see ``__get__``).
    Only a class a worker could import by name is found here.
    """
    raw = function.__wrapped__
    qualname: str = getattr(raw, "__qualname__", "")
    owner_path, _, name = qualname.rpartition(".")
    if not owner_path or "<" in owner_path:
        return
    try:
        owner: object = importlib.import_module(raw.__module__)
        for part in owner_path.split("."):
            owner = getattr(owner, part)
    except Exception:  # noqa: BLE001 - not importable by name: nothing to check
        return
    defined = vars(owner).get(name) if isinstance(owner, type) else None
    if isinstance(defined, classmethod) and defined.__func__ is function:
        raise TypeError(_UNDER_CLASSMETHOD.format(label=f"{raw.__module__}.{qualname}"))


def refuse_classmethod_chaining(function: Any, instance: object, owner: object) -> None:
    # Before 3.13, classmethod.__get__ calls ours with (cls, cls); a normal access never does.
    if owner is instance and isinstance(instance, type):
        raw = function.__wrapped__
        label = f"{raw.__module__}.{raw.__qualname__}"
        raise TypeError(_UNDER_CLASSMETHOD.format(label=label))
