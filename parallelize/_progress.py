"""``progress=`` on a map: items counted as their chunks complete, drawn in the consumer's thread.

What is counted: every item of every chunk that has completed in a worker, whether or not the
consumer has taken it yet (an ordered map holds a finished chunk back behind a slow one; the bar
does not wait for it, so it never jumps). A chunk of 500 items adds 500 when it completes. The
total is the input's ``len()`` (``operator.length_hint``; the shortest, for several iterables)
when known, else the bar is a counter; when the input runs out the total becomes the count, so
every complete map ends at ``N/N``.

Where it is drawn: in the thread that iterates, never in the dispatcher. While that thread waits
for the chunk it needs next, it wakes every ``INTERVAL`` to redraw (a timed wait on that one
future, which takes Ctrl-C exactly as the untimed one does); between waits it draws at most once
per ``INTERVAL`` (a tqdm bar whose count has not moved redraws once per ``TICK``, for its elapsed
time: a log file that stderr goes to gets a line a second, not ten). So a bar costs the engine
nothing, a callable of the user's is called in the
user's own thread (where a GUI or a notebook wants it), and drawing does at most ten redraws a
second however small the items are: the throttle is the clock, not a count of chunks.

When it ends: the bar is closed (its last state drawn, its line finished) when the map has run
out, when an exception leaves the map for the consumer (an item's error: a loop ends there; if
the consumer goes on with the same map, a new bar takes over at the same count), and on
``close()``, ``break`` (the map is dropped) and Ctrl-C. A progress display never costs a result:
an exception from the user's bar or callable is logged once, and that map draws no more.
"""

from __future__ import annotations

import concurrent.futures
import logging
import operator
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from ._futures import Future

__all__ = ["INTERVAL", "ProgressBar", "ProgressOption", "Tracker", "make_tracker", "total_of"]

log = logging.getLogger("parallelize")

# Seconds between two draws: tqdm's own default refresh interval.
INTERVAL = 0.1
# Seconds between two redraws of a tqdm bar whose count has not moved (for its elapsed time).
TICK = 1.0


@runtime_checkable
class ProgressBar(Protocol):
    """What ``progress=`` takes as a bar of the user's own: a tqdm, or anything with these two."""

    def update(self, n: int, /) -> object: ...
    def close(self) -> object: ...


# True: a tqdm bar on stderr; a ProgressBar; or a callable(done, total), total None when unknown.
ProgressOption: TypeAlias = "bool | ProgressBar | Callable[[int, int | None], object] | None"


def total_of(iterables: Iterable[Iterable[Any]]) -> int | None:
    """How many items a map over ``iterables`` has: the shortest known length, None if none is known.

    A map stops at its shortest iterable, and one of unknown length may be shorter still: then
    the total is an upper bound, set right when the input runs out.
    """
    known = []
    for iterable in iterables:
        try:
            length = operator.length_hint(iterable, -1)
        except Exception:  # noqa: BLE001 - a broken __len__ leaves the length unknown, nothing more
            continue
        if length >= 0:
            known.append(length)
    return min(known) if known else None


def make_tracker(progress: object, total: int | None, label: str) -> Tracker | None:
    """The tracker for a map's ``progress=`` argument, checked here, at the call."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            import tqdm  # noqa: F401 - checked now, so a missing tqdm fails at the call
        except ImportError as exc:
            raise ImportError(
                "progress=True draws a tqdm bar, but tqdm cannot be imported "
                f"({exc}); install it (pip install tqdm), or pass progress= a callable(done, total)"
            ) from exc
        return Tracker(_TqdmDisplay(label), total)
    if isinstance(progress, ProgressBar):
        return Tracker(_BarDisplay(progress), total)
    if callable(progress):
        return Tracker(_CallbackDisplay(progress), total)
    raise TypeError(
        f"progress= takes True, False, None, a bar with update() and close() (such as a tqdm), or "
        f"a callable(done, total); got {type(progress).__name__}"
    )


class _Display(Protocol):
    def show(self, done: int, total: int | None) -> None: ...
    def close(self, done: int, total: int | None) -> None: ...


class Tracker:
    """One map's count, and when to draw it. Used by the map's consumer thread only."""

    __slots__ = ("_display", "_drawn", "_next", "done", "over", "total")

    def __init__(self, display: _Display, total: int | None) -> None:
        self._display: _Display | None = display  # None once it failed
        self.total = total
        self.done = 0  # items of the chunks the map has taken (completed ones)
        self._drawn = -1  # the count drawn last; -1: nothing drawn yet
        self._next = 0.0  # monotonic time of the next draw
        self.over = False  # the map has ended: nothing is drawn again

    def wait(self, in_flight: deque[tuple[Future[Any], int]], deadline: float | None = None) -> None:
        """Wait until the first chunk in flight has completed (or the map's ``deadline``, a
        ``time.monotonic()`` moment, has passed), redrawing every INTERVAL meanwhile."""
        head = in_flight[0][0]
        while True:
            self.draw(in_flight)
            step = INTERVAL if deadline is None else min(INTERVAL, deadline - time.monotonic())
            if step <= 0 or _settled_within(head, step):
                return

    def draw(self, in_flight: deque[tuple[Future[Any], int]]) -> None:
        """Show the count, at most once per INTERVAL: the chunks taken, and those done in flight."""
        if self.over or self._display is None:
            return
        moment = time.monotonic()
        if moment < self._next:
            return
        self._next = moment + INTERVAL
        done = self.done + sum(count for future, count in in_flight if future.done())
        self._call("show", done, self.total)
        self._drawn = done

    def took(self, count: int) -> None:
        """A completed chunk of ``count`` items was taken by the map."""
        self.done += count

    def failed(self) -> None:
        """An exception leaves the map for its consumer: finish the display's line for now."""
        if not self.over and self._display is not None and self._drawn >= 0:
            self._call("close", self.done, self.total)

    def finish(self) -> None:
        """The input ran out and every item has completed: ``N/N``, and closed."""
        if not self.over:
            self.total = self.done
            self._drawn = max(self._drawn, 0)  # an empty map still shows its 0/0
            self.end()

    def end(self) -> None:
        """The map is over (finished, closed, dropped, or interrupted): close for good. A map that
        was never iterated drew nothing and closes nothing."""
        if self.over:
            return
        self.over = True
        if self._display is not None and self._drawn >= 0:
            self._call("close", self.done, self.total)

    def _call(self, method: str, done: int, total: int | None) -> None:
        display = self._display
        assert display is not None
        try:
            getattr(display, method)(done, total)
        except Exception:
            self._display = None
            log.exception("the progress display of a map failed; the map goes on without it")


def _settled_within(future: Future[Any], timeout: float) -> bool:
    """Whether ``future`` is done after waiting up to ``timeout``; never raises its outcome.

    ``exception()`` waits as ``result()`` does (Ctrl-C included: the pool stops its work) but
    returns a failure instead of raising it; a cancelled future raises CancelledError.
    """
    try:
        future.exception(timeout)
    except concurrent.futures.CancelledError:
        return True
    except concurrent.futures.TimeoutError:
        return future.done()
    return True


class _TqdmDisplay:
    """``progress=True``: a tqdm bar on the current ``sys.stderr``; the notebook widget in a Jupyter
    kernel that has ipywidgets, text otherwise. Made at the first draw; after a ``close`` on an
    error, the next draw makes a new one that starts at the same count."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._shown = 0
        self._drawn_at = 0.0  # monotonic time of the last redraw
        self._closed_at = -1  # the count the last bar was closed at

    def show(self, done: int, total: int | None, *, tick: bool = True) -> None:
        bar = self._bar
        if bar is None:
            bar = self._bar = _new_bar(self._label, total, done)
            self._shown = done
            self._drawn_at = time.monotonic()
            if bar is None:
                return
        if bar.total != total:
            bar.total = total
        moment = time.monotonic()
        if done != self._shown:
            bar.update(done - self._shown)
            self._shown = done
            self._drawn_at = moment
        elif tick and moment - self._drawn_at >= TICK:
            # The elapsed time moves on while items are slow, once a second: a log file that
            # stderr goes to gets a line a second, not ten.
            bar.refresh()
            self._drawn_at = moment

    def close(self, done: int, total: int | None) -> None:
        if self._bar is None and done == self._closed_at:
            return  # closed at this very count already (after an error)
        self.show(done, total, tick=False)  # a new bar if the count moved since the last closed
        bar, self._bar = self._bar, None
        self._closed_at = done
        if bar is not None:
            bar.close()  # draws the last state once more, and ends the line


def _new_bar(label: str, total: int | None, initial: int) -> Any:
    if sys.stderr is None:  # pythonw, or a daemon with no stderr: nowhere to draw
        return None
    options: dict[str, Any] = {"total": total, "initial": initial, "desc": label, "unit": "item"}
    if _in_jupyter_kernel():
        try:
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(**options)
        except Exception:  # noqa: BLE001 - no ipywidgets, or a frontend without widgets: text instead
            pass
    from tqdm import tqdm

    return tqdm(file=sys.stderr, **options)


def _in_jupyter_kernel() -> bool:
    """A Jupyter kernel (not a terminal IPython, qtconsole or spyder), as tqdm.autonotebook tells."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    name = type(shell).__name__.lower()
    return "zmq" in name and "qt" not in name and "spyder" not in name


class _BarDisplay:
    """A bar of the user's own: ``update(n)`` with the new items, ``close()`` at the end.

    If it has a ``total`` left as None and the map knows its total, the total is set."""

    def __init__(self, bar: ProgressBar) -> None:
        self._bar = bar
        self._shown = 0
        self._closed = False

    def show(self, done: int, total: int | None) -> None:
        if self._closed:
            return
        if total is not None and getattr(self._bar, "total", 0) is None:
            self._bar.total = total  # type: ignore[attr-defined]
        if done != self._shown:
            self._bar.update(done - self._shown)
            self._shown = done

    def close(self, done: int, total: int | None) -> None:
        if self._closed:
            return
        self.show(done, total)
        self._closed = True  # a bar cannot be reopened: after an error it shows no more
        self._bar.close()


class _CallbackDisplay:
    """``progress=callable``: called with ``(done, total)`` when the count moves, and at the end."""

    def __init__(self, callback: Callable[[int, int | None], object]) -> None:
        self._callback = callback
        self._said: tuple[int, int | None] | None = None

    def show(self, done: int, total: int | None) -> None:
        if (done, total) != self._said:
            self._said = (done, total)
            self._callback(done, total)

    def close(self, done: int, total: int | None) -> None:
        self.show(done, total)
