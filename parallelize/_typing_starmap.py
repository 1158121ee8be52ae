"""The typed ``starmap`` of every decorated form (``_typing`` explains the overloads; ``map``'s
options and their types are the same, ``return_exceptions=True`` included)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

if TYPE_CHECKING:
    from typing_extensions import Never, Unpack  # typing's are 3.11+

    from ._mapping import MapIterator
    from ._progress import ProgressOption
    from ._typing import _Call1, _Call2, _Call3, _Call4, _Call5, _CallGeneric

P = ParamSpec("P")
R = TypeVar("R")
R2 = TypeVar("R2")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
A4 = TypeVar("A4")
A5 = TypeVar("A5")


class StarmapMethods(Generic[P, R]):
    """``starmap`` for ``ParallelFunction`` and its bound form (``MapMethods`` adds ``map``)."""

    __slots__ = ()

    def _map_items(
        self,
        arguments: Iterator[tuple[Any, ...]],
        chunksize: int | None,
        timeout: float | None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        raise NotImplementedError

    def _starmap_arguments(self, iterable: Iterable[Iterable[Any]]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    @overload
    def starmap(
        self: _Call1[A1, R2],
        iterable: Iterable[tuple[A1]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def starmap(
        self: _Call1[A1, R2],
        iterable: Iterable[tuple[A1]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def starmap(
        self: _Call2[A1, A2, R2],
        iterable: Iterable[tuple[A1, A2]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def starmap(
        self: _Call2[A1, A2, R2],
        iterable: Iterable[tuple[A1, A2]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def starmap(
        self: _Call3[A1, A2, A3, R2],
        iterable: Iterable[tuple[A1, A2, A3]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def starmap(
        self: _Call3[A1, A2, A3, R2],
        iterable: Iterable[tuple[A1, A2, A3]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def starmap(
        self: _Call4[A1, A2, A3, A4, R2],
        iterable: Iterable[tuple[A1, A2, A3, A4]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def starmap(
        self: _Call4[A1, A2, A3, A4, R2],
        iterable: Iterable[tuple[A1, A2, A3, A4]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def starmap(
        self: _Call5[A1, A2, A3, A4, A5, R2],
        iterable: Iterable[tuple[A1, A2, A3, A4, A5]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R2]: ...
    @overload
    def starmap(
        self: _Call5[A1, A2, A3, A4, A5, R2],
        iterable: Iterable[tuple[A1, A2, A3, A4, A5]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R2 | BaseException]: ...
    @overload
    def starmap(
        self: _CallGeneric[Never],
        iterable: Iterable[Iterable[Any]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]: ...
    @overload
    def starmap(
        self,
        iterable: Iterable[tuple[Any, Any, Any, Any, Any, Any, Unpack[tuple[Any, ...]]]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def starmap(
        self,
        iterable: Iterable[tuple[Any, Any, Any, Any, Any, Any, Unpack[tuple[Any, ...]]]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    def starmap(
        self,
        iterable: Iterable[Iterable[Any]],
        /,
        *,
        chunksize: int | None = None,
        timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        """Like ``itertools.starmap``: each item is a tuple of arguments (options as for ``map``)."""
        mapping = self._map_items(
            self._starmap_arguments(iterable),
            chunksize,
            timeout,
            ordered,
            return_exceptions,
        )
        return mapping._counted((iterable,), progress)
