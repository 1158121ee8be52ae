"""The public names and the configuration functions, as a type checker sees them.

Checked by mypy --strict, never executed; usage sits inside functions so importing starts nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from typing_extensions import assert_type

import parallelize
from parallelize import (
    Future,
    available_cpus,
    configure,
    shutdown,
)


def public_names_resolve() -> None:
    # Through the package as well as by from-import: none of them may degrade to Any.
    assert_type(parallelize.Future[int](), Future[int])
    assert_type(parallelize.available_cpus(), int)
    assert_type(parallelize.Pool(2).workers, int)
    state: parallelize.PoolState = parallelize.PoolState.NEW
    value: str = state.value  # basedpyright narrows it further, to Literal['new']
    print(value)
    assert_type(parallelize.parallel(len)("abc"), Future[int])


def misspelt_names_are_rejected() -> None:
    from parallelize import paralel  # type: ignore[attr-defined]

    parallelize.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    print(paralel)


def configure_signature() -> None:
    as_callable: Callable[[], None] = configure
    print(as_callable)
    configure(workers=4)
    configure(start_method="spawn")
    configure(backend="thread")
    configure(workers=None, start_method=None, backend=None)
    configure(workers=2, start_method="forkserver", backend="process")


def shutdown_signature() -> None:
    plain: Callable[[], None] = shutdown
    waiting: Callable[[bool], None] = shutdown
    print(plain, waiting)
    shutdown()
    shutdown(False)
    shutdown(wait=False, cancel_pending=True)
    assert_type(available_cpus(), int)


def rejected_configuration() -> None:
    configure(4)  # type: ignore[call-arg]
    configure(workers="4")  # type: ignore[arg-type]
    configure(start_method=1)  # type: ignore[arg-type]
    configure(backend=None, pool=None)  # type: ignore[call-arg]
    shutdown(True, True)  # type: ignore[call-arg]
    shutdown(cancel=True)  # type: ignore[call-arg]
    shutdown(wait="yes")  # type: ignore[arg-type]
    cpus: str = available_cpus()  # type: ignore[assignment]
    print(cpus)
