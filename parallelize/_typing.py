"""The typed ``map`` / ``starmap`` every decorated form shares, and the call protocols behind them.

``ParallelFunction[P, R]`` keeps the whole parameter list through ``ParamSpec``, but a checker
cannot split P into per-position types, so ``map``'s ``self`` is matched against the small call
protocols ``_Call1`` .. ``_Call5`` (self-typed overloads on the generic class itself infer
``Never`` in mypy). Binding (``__get__``) uses the same trick: given ``Concatenate[S, P2]`` in a
self-type, mypy 2.x does not check S, but it does through a protocol whose ``__call__`` takes S
first (``_ParallelMethod``).

mypy binds a generic function's type variables to Never in those protocols (pyright solves them
from the iterables), so the next overload takes a function returning ``Future[Never]``: only a
generic one (or one that never returns) matches it, and its items are unchecked and its result
``MapIterator[Any]``, the honest type when T is not known. A function with a concrete result fails
that self-type, so a mistake in its map is still reported.

The last overload takes six or more iterables: past five the positions are not checked, but the
result is still ``MapIterator[R]``, R being the function's own return type (it does not depend on
the arguments, so it needs no protocol). It cannot swallow a mistake made with fewer iterables,
because it needs at least six.

``MapMethods`` is a runtime mixin as well: the plain forms map over the iterables as given, the
bound forms (``obj.method.map(xs)``) put the bound object in front of each item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import Never  # typing's are 3.11+

    from ._futures import Future
    from ._mapping import MapIterator
    from ._progress import ProgressOption

from ._typing_starmap import StarmapMethods

P = ParamSpec("P")
R = TypeVar("R")
R2 = TypeVar("R2")
T1_contra = TypeVar("T1_contra", contravariant=True)
T2_contra = TypeVar("T2_contra", contravariant=True)
T3_contra = TypeVar("T3_contra", contravariant=True)
T4_contra = TypeVar("T4_contra", contravariant=True)
T5_contra = TypeVar("T5_contra", contravariant=True)
S_contra = TypeVar("S_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
P2 = ParamSpec("P2")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
A4 = TypeVar("A4")
A5 = TypeVar("A5")


class _Call1(Protocol[T1_contra, R2]):
    def __call__(self, a1: T1_contra, /) -> Future[R2]: ...


class _Call2(Protocol[T1_contra, T2_contra, R2]):
    def __call__(self, a1: T1_contra, a2: T2_contra, /) -> Future[R2]: ...


class _Call3(Protocol[T1_contra, T2_contra, T3_contra, R2]):
    def __call__(self, a1: T1_contra, a2: T2_contra, a3: T3_contra, /) -> Future[R2]: ...


class _Call4(Protocol[T1_contra, T2_contra, T3_contra, T4_contra, R2]):
    def __call__(self, a1: T1_contra, a2: T2_contra, a3: T3_contra, a4: T4_contra, /) -> Future[R2]: ...


class _Call5(Protocol[T1_contra, T2_contra, T3_contra, T4_contra, T5_contra, R2]):
    def __call__(
        self, a1: T1_contra, a2: T2_contra, a3: T3_contra, a4: T4_contra, a5: T5_contra, /
    ) -> Future[R2]: ...


class _CallGeneric(Protocol[R2]):
    """Matches a generic function (``def same(x: T) -> T``) once mypy has bound T to Never."""

    def __call__(self, *args: Any, **kwargs: Any) -> Future[R2]: ...


class _ParallelMethod(Protocol[S_contra, P2, R2]):
    """A ``@parallel`` function seen as a method: its first parameter takes the bound object."""

    def __call__(self, first: S_contra, /, *args: P2.args, **kwargs: P2.kwargs) -> Future[R2]: ...


class _InProcessMethod(Protocol[S_contra, P2, R_co]):
    """An ``@in_process`` function seen as a method."""

    def __call__(self, first: S_contra, /, *args: P2.args, **kwargs: P2.kwargs) -> R_co: ...


class MapMethods(StarmapMethods[P, R], Generic[P, R]):
    """``map`` and ``starmap`` for ``ParallelFunction`` and its bound form."""

    __slots__ = ()

    # _map_items and _starmap_arguments: declared by StarmapMethods.
    def _map_arguments(self, iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    @overload
    def map(
        self: _Call1[A1, R2],
        it1: Iterable[A1],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def map(
        self: _Call1[A1, R2],
        it1: Iterable[A1],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def map(
        self: _Call2[A1, A2, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def map(
        self: _Call2[A1, A2, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def map(
        self: _Call3[A1, A2, A3, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def map(
        self: _Call3[A1, A2, A3, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def map(
        self: _Call4[A1, A2, A3, A4, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        it4: Iterable[A4],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def map(
        self: _Call4[A1, A2, A3, A4, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        it4: Iterable[A4],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def map(
        self: _Call5[A1, A2, A3, A4, A5, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        it4: Iterable[A4],
        it5: Iterable[A5],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def map(
        self: _Call5[A1, A2, A3, A4, A5, R2],
        it1: Iterable[A1],
        it2: Iterable[A2],
        it3: Iterable[A3],
        it4: Iterable[A4],
        it5: Iterable[A5],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def map(
        self: _CallGeneric[Never],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]: ...
    @overload
    def map(
        self,
        it1: Iterable[Any],
        it2: Iterable[Any],
        it3: Iterable[Any],
        it4: Iterable[Any],
        it5: Iterable[Any],
        it6: Iterable[Any],
        /,
        *more: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        it1: Iterable[Any],
        it2: Iterable[Any],
        it3: Iterable[Any],
        it4: Iterable[Any],
        it5: Iterable[Any],
        it6: Iterable[Any],
        /,
        *more: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    def map(
        self,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        """Results in input order, like ``builtins.map``; lazy and chunked automatically.

        ``timeout`` (default: the decorator's) bounds each item's running time, even inside a
        chunk: only the item that ran too long fails, and the rest of its chunk runs on.
        ``progress=True`` draws a bar of the items completed (see README "Progress").
        ``ordered=False`` yields results as their chunks finish (like ``imap_unordered``);
        ``return_exceptions=True`` yields a failed item's exception in its place instead of
        raising it (like ``asyncio.gather``). The result is an async iterator too.
        """
        mapping = self._map_items(
            self._map_arguments(iterables),
            chunksize,
            timeout,
            ordered,
            return_exceptions,
        )
        return mapping._counted(iterables, progress)
