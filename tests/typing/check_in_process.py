"""What ``@in_process`` promises to a type checker (checked by mypy --strict, never executed).

A decorated function keeps its signature and returns its value directly, whichever form of the
decorator made it. Usage sits inside functions so that importing this module would start nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from typing_extensions import assert_type

from parallelize import InProcessFunction, Pool, in_process

T = TypeVar("T")


@in_process
def parse(text: str) -> int:
    return int(text)


@in_process(isolated=True)
def risky(path: str, *, retries: int = 0) -> bytes:
    return path.encode() * (retries + 1)


@in_process(backend="thread")
def threaded(x: int, y: int = 2) -> float:
    return x / y


@in_process()
def nothing() -> None:
    return None


@in_process
def wrap(item: T) -> list[T]:
    return [item]


def decorated_types() -> None:
    # assert_type would compare parameter names too, so these are assignments.
    bare: InProcessFunction[[str], int] = parse
    isolated: Callable[[str], bytes] = risky  # ParamSpec is invariant: the keyword counts too
    none: InProcessFunction[[], None] = nothing
    print(bare, isolated, none)


def calls_return_the_value() -> None:
    assert_type(parse("3"), int)
    assert_type(parse(text="3"), int)
    assert_type(risky("/tmp/x"), bytes)
    assert_type(risky("/tmp/x", retries=2), bytes)
    assert_type(threaded(1), float)
    assert_type(threaded(1, 4), float)
    assert_type(wrap(3), list[int])
    assert_type(wrap("a"), list[str])
    nothing()


def the_signature_is_kept() -> None:
    as_callable: Callable[[str], int] = parse
    keyword_only: Callable[[str], bytes] = risky
    assert_type(as_callable("1"), int)
    assert_type(keyword_only("p"), bytes)
    assert_type(parse.__wrapped__("3"), int)
    assert_type(risky.__wrapped__("p", retries=1), bytes)
    assert_type(parse.__name__, str)


def pool_option() -> None:
    with Pool(2) as pool:

        @in_process(pool=pool)
        def on_pool(x: int) -> str:
            return str(x)

        assert_type(on_pool(1), str)


def decorating_closures() -> None:
    base = 10

    def shifted(x: int) -> int:
        return x + base

    assert_type(in_process(shifted)(1), int)
    assert_type(in_process(isolated=True)(shifted)(1), int)


def rejected_calls() -> None:
    parse(3)  # type: ignore[arg-type]
    parse()  # type: ignore[call-arg]
    parse("3", "4")  # type: ignore[call-arg]
    parse(txt="3")  # type: ignore[call-arg]
    risky(b"/tmp/x")  # type: ignore[arg-type]
    risky("/tmp/x", 2)  # type: ignore[call-arg]
    risky("/tmp/x", retries="2")  # type: ignore[arg-type]
    threaded("1")  # type: ignore[arg-type]
    nothing(1)  # type: ignore[call-arg]


def rejected_results() -> None:
    text: str = parse("3")  # type: ignore[assignment]
    number: int = risky("p")  # type: ignore[assignment]
    items: list[str] = wrap(3)  # type: ignore[arg-type]
    print(text, number, items)


def rejected_decorations() -> None:
    in_process(3)  # type: ignore[call-overload]
    in_process(isolated="yes")  # type: ignore[call-overload]
    in_process(workers=2)  # type: ignore[call-overload]
    in_process(parse.__wrapped__, isolated=True)  # type: ignore[call-overload]
