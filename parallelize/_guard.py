"""The missing ``if __name__ == "__main__":`` guard, said in one line instead of 125.

spawn and forkserver workers import the parent's main script again (as ``__mp_main__``). A script
that calls a ``@parallel`` function at its top level calls it again there, and multiprocessing
refuses to start processes from a process still importing its main module, with a long
traceback in every worker and a puzzling error in the parent. A pool about to start in such a
worker instead says what to do in one line and exits with ``UNGUARDED_MAIN``, which the parent
turns into an error naming the fix. Real import errors of the script are left alone: only an
attempt to start work while the main module is being imported gets here.
"""

from __future__ import annotations

import os
import sys

UNGUARDED_MAIN = 71  # a worker's exit code: the main module started work while being imported

FIX = 'guard its calls with `if __name__ == "__main__":`'


def exit_if_importing_main() -> None:
    """Called where a pool starts; a no-op except in a worker still importing the main module."""
    from multiprocessing import process

    if not getattr(process.current_process(), "_inheriting", False):
        return
    sys.stderr.write(
        f"parallelize: worker {os.getpid()} stopped: the main module {main_file()} starts parallel "
        f"work when it is imported, and workers import it again; {FIX}\n"
    )
    sys.stderr.flush()
    os._exit(UNGUARDED_MAIN)


def main_file() -> str:
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    return os.path.basename(getattr(main, "__file__", None) or "__main__")


def unguarded_main(pid: int, what: str) -> str:
    """The parent's message for a task whose worker exited with ``UNGUARDED_MAIN``."""
    return (
        f"the main module {main_file()} must {FIX}: worker {pid} imported it again, as spawn and "
        f"forkserver workers do, and it started parallel work there, so {what} did not run"
    )
