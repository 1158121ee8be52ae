"""The physical limit: hand-made worker processes on bare ``multiprocessing.connection`` pipes.

No pool, no futures, no pickling where the data is already bytes: the parent writes a message and
a child answers. Each row's "bare pipe" figure does the same work as the pools:

* round trip: one child echoes a small message (ping-pong);
* submit: small messages pipelined to two children, a reader thread per child collecting replies;
* map: the items in pickled batches (multiprocessing.Pool's chunk size), one batch per child in
  flight, so two children work at once;
* 64 MiB: the raw buffer written to one child (it answers the length), or read from it;
* CPU: busy-loop jobs handed to two children, one in flight each.

Children are started with the forkserver (spawn where there is none), like the pools they bound.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import struct
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from _bench_tasks import double, make, spin

_SIZE = struct.Struct("<Q")

# One byte of command, then its argument.
ECHO = b"e"  # reply with the message itself
LENGTH = b"l"  # the next message is a payload: reply with its length
PRODUCE = b"p"  # + size: reply with a payload of that many bytes
MAKE = b"k"  # + size: make (and keep) that payload now, reply when done
MAP = b"m"  # + pickled list: reply with the pickled list of double(x)
SPIN = b"s"  # + turns: spin, then reply
QUIT = b"q"


def serve(conn: Connection) -> None:
    """A child's whole life: answer messages until told to quit (or the parent goes)."""
    made: dict[int, Any] = {}
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        command, rest = message[:1], message[1:]
        if command == ECHO:
            conn.send_bytes(message)
        elif command == LENGTH:
            conn.send_bytes(_SIZE.pack(len(conn.recv_bytes())))
        elif command == PRODUCE:
            size = _SIZE.unpack(rest)[0]
            if size not in made:
                made[size] = make("bytes", size)
            conn.send_bytes(made[size])
        elif command == MAKE:
            size = _SIZE.unpack(rest)[0]
            if size not in made:
                made[size] = make("bytes", size)
            conn.send_bytes(b"d")
        elif command == MAP:
            conn.send_bytes(pickle.dumps([double(x) for x in pickle.loads(rest)], pickle.HIGHEST_PROTOCOL))
        elif command == SPIN:
            spin(_SIZE.unpack(rest)[0])
            conn.send_bytes(b"d")
        else:
            return


def _recv(conn: Connection, timeout: float) -> bytes:
    if not conn.poll(timeout):
        raise TimeoutError(f"a bare-pipe child did not answer in {timeout:g} s")
    return conn.recv_bytes()


class BarePipes:
    """``count`` children, each on a duplex pipe of its own."""

    def __init__(self, count: int) -> None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self.start_method = method
        context = multiprocessing.get_context(method)
        self.conns: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(count):
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(target=serve, args=(theirs,), name=f"bare-pipe-{index}", daemon=True)
            process.start()
            theirs.close()
            self.conns.append(mine)
            self.processes.append(process)
        for conn in self.conns:  # every child is up before anything is timed
            conn.send_bytes(ECHO)
            _recv(conn, 60)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send_bytes(QUIT)
        for process in self.processes:
            process.join(10)
            if process.exitcode is None:
                process.kill()
                process.join(10)
        for conn in self.conns:
            conn.close()

    # -- the rows -----------------------------------------------------------------------------------

    def round_trip(self, timeout: float) -> None:
        conn = self.conns[0]
        conn.send_bytes(ECHO + b"12345678")
        _recv(conn, timeout)

    def pipelined(self, count: int, timeout: float) -> None:
        """``count`` small messages, alternating between the children; replies read by threads."""
        failures: list[BaseException] = []

        def read(conn: Connection, expected: int) -> None:
            try:
                for _ in range(expected):
                    _recv(conn, timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                failures.append(exc)

        shares = [len(range(i, count, len(self.conns))) for i in range(len(self.conns))]
        readers = [
            threading.Thread(target=read, args=(conn, share), daemon=True)
            for conn, share in zip(self.conns, shares, strict=True)
        ]
        for reader in readers:
            reader.start()
        conns = self.conns
        for i in range(count):
            conns[i % len(conns)].send_bytes(ECHO + _SIZE.pack(i))
        for reader in readers:
            reader.join(timeout)
        if failures or any(r.is_alive() for r in readers):
            raise failures[0] if failures else TimeoutError("bare-pipe replies did not all arrive")

    def batched_map(self, items: list[int], chunk: int, timeout: float) -> list[int]:
        jobs = (
            MAP + pickle.dumps(items[i : i + chunk], pickle.HIGHEST_PROTOCOL)
            for i in range(0, len(items), chunk)
        )
        out: list[int] = []
        for reply in self._greedy(jobs, timeout):
            out.extend(pickle.loads(reply))
        return out

    def spin_jobs(self, turns: int, count: int, timeout: float) -> None:
        for _ in self._greedy((SPIN + _SIZE.pack(turns) for _ in range(count)), timeout):
            pass

    def _greedy(self, jobs: Iterator[bytes], timeout: float) -> list[bytes]:
        """Run ``jobs`` one in flight per child, each child taking the next as it finishes; the
        replies come back in job order."""
        replies: dict[int, bytes] = {}
        running: dict[Connection, int] = {}
        numbered = enumerate(jobs)
        for conn in self.conns:
            job = next(numbered, None)
            if job is None:
                break
            conn.send_bytes(job[1])
            running[conn] = job[0]
        while running:
            ready = wait(list(running), timeout)
            if not ready:
                raise TimeoutError(f"a bare-pipe child did not answer in {timeout:g} s")
            for conn in ready:
                assert isinstance(conn, Connection)
                replies[running.pop(conn)] = conn.recv_bytes()
                job = next(numbered, None)
                if job is not None:
                    conn.send_bytes(job[1])
                    running[conn] = job[0]
        return [replies[i] for i in range(len(replies))]

    def send_payload(self, payload: Any, timeout: float) -> int:
        conn = self.conns[0]
        conn.send_bytes(LENGTH)
        conn.send_bytes(payload)
        return int(_SIZE.unpack(_recv(conn, timeout))[0])

    def make_payload(self, size: int, timeout: float) -> None:
        """Have the child make the payload ``fetch_payload`` will read (untimed)."""
        conn = self.conns[0]
        conn.send_bytes(MAKE + _SIZE.pack(size))
        _recv(conn, timeout)

    def fetch_payload(self, size: int, timeout: float) -> bytes:
        conn = self.conns[0]
        conn.send_bytes(PRODUCE + _SIZE.pack(size))
        return _recv(conn, timeout)


# A fresh interpreter's first answer from a child over a pipe: os.fork and os.pipe, nothing else.
COLD_CODE = """\
import os
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w2, os.read(r1, 8))
    os._exit(0)
os.write(w1, b"12345678")
os.read(r2, 8)
report()
os.waitpid(pid, 0)
"""
