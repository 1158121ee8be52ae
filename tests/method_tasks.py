"""Importable classes with decorated methods, for tests/test_methods.py (workers import them by name)."""

from __future__ import annotations

import os
import threading

from parallelize import in_process, parallel


class Scorer:
    """Instance, static and class methods, each decorator in each order that works."""

    unit = 10

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.calls = 0

    @parallel
    def score(self, x: int) -> float:
        self.calls += 1  # on the worker's copy: the caller's object never sees it
        return self.weight * x

    @parallel
    def pair(self, x: int, y: int) -> float:
        return self.weight * (x + y)

    @parallel
    def where(self) -> int:
        return os.getpid()

    @in_process
    def score_now(self, x: int) -> float:
        return self.weight * x

    @parallel
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @staticmethod
    @parallel
    def triple(x: int) -> int:
        return 3 * x

    @parallel
    @classmethod
    def scaled(cls, x: int) -> int:
        return cls.unit * x

    @in_process
    @classmethod
    def scaled_now(cls, x: int) -> int:
        return cls.unit * x

    @in_process
    @staticmethod
    def double_now(x: int) -> int:
        return 2 * x


class BigScorer(Scorer):
    """A subclass: class methods bind the class they are called on."""

    unit = 100


class Locked:
    """An object that cannot be pickled (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @parallel
    def work(self, x: int) -> int:
        return x


class Misordered:
    """@classmethod above @parallel: refused at first use."""

    @classmethod  # type: ignore[misc]
    @parallel
    def make(cls, x: int) -> int:
        return x
