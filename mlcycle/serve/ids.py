"""Prediction ids: compact, unique across worker processes, and ordered by time.

An id is 28 lowercase hex digits: 12 for the creation time in milliseconds, 8 for a
random node number drawn once per process, 8 for a per-process counter. Ids sort by
creation time as plain strings, and the time can be read back out of an id, which
lets feedback tell "an id we never issued" from "an id another worker issued a moment
ago and has not written to the store yet".
"""

from __future__ import annotations

import os
import re
import time

ID_LENGTH = 28
ID_PATTERN = re.compile(r"[0-9a-f]{28}")
_COUNTER_MASK = 0xFFFFFFFF


class IdGenerator:
    """Issues prediction ids for one process; not shared between threads."""

    def __init__(self) -> None:
        self._node = int.from_bytes(os.urandom(4), "big")
        self._counter = int.from_bytes(os.urandom(4), "big")

    def take(self, count: int) -> list[str]:
        """`count` fresh ids, in order."""
        prefix = f"{time.time_ns() // 1_000_000:012x}{self._node:08x}"
        start = self._counter
        self._counter = (start + count) & _COUNTER_MASK
        return [f"{prefix}{(start + i) & _COUNTER_MASK:08x}" for i in range(count)]


def is_wellformed(value: str) -> bool:
    """Whether `value` has the shape of an id this engine issues."""
    return len(value) == ID_LENGTH and ID_PATTERN.fullmatch(value) is not None


def issued_at(value: str) -> float | None:
    """The creation time (seconds since the epoch) of a well-formed id, else None."""
    if not is_wellformed(value):
        return None
    return int(value[:12], 16) / 1000.0
