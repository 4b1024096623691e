"""Which lines of the list repeat a pseudonym from an earlier line (the first occurrence counts).

Computed once, before the run, with memory bounded by ``PARTITION_LINES`` rather than by the list:
a long list is split by hash into partition files of about that many lines (in a private temporary
directory), and each partition is checked in memory on its own. The result — the sorted line
numbers of repeats — goes into the run's state, so a resumed run never recomputes it, and the run
itself needs only a merge against it. A leaked event log with one row per event per person can
hold millions of repeats; that costs disk, not memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .inputs import Entry, read_entries

PARTITION_LINES = 100_000
BYTES_PER_LINE = 27  # a pseudonym and a newline
MAX_PARTITIONS = 4096
DupSink = Callable[[Iterable[int]], None]


def _partitions_for(path: Path) -> int:
    estimated = os.path.getsize(path) // BYTES_PER_LINE + 1
    return min(MAX_PARTITIONS, max(1, -(-estimated // PARTITION_LINES)))


def _repeats(entries: Iterable[Entry]) -> list[int]:
    """Line numbers of repeats among ``entries`` (held in memory: one partition's worth)."""
    seen: set[str] = set()
    repeats = []
    for line, pseudonym in entries:
        if pseudonym is None:
            continue
        if pseudonym in seen:
            repeats.append(line)
        else:
            seen.add(pseudonym)
    return repeats


def _read_partition(path: Path) -> Iterator[Entry]:
    with open(path, "r", encoding="ascii") as handle:
        for record in handle:
            line, pseudonym = record.split()
            yield int(line), pseudonym


def find_repeats(path: Path, sink: DupSink, *, workdir: Path | None = None) -> int:
    """Pass the line numbers of repeated pseudonyms to ``sink`` (per partition, each batch sorted).

    Returns how many there are.
    """
    parts = _partitions_for(path)
    if parts == 1:
        with open(path, "rb") as handle:
            repeats = _repeats(read_entries(handle))
        sink(repeats)
        return len(repeats)
    scratch = Path(tempfile.mkdtemp(prefix="breach-dedupe-", dir=workdir))  # mode 0700
    try:
        files = [open(scratch / f"{i}.txt", "w", encoding="ascii", buffering=1 << 16) for i in range(parts)]
        try:
            with open(path, "rb") as handle:
                for line, pseudonym in read_entries(handle):
                    if pseudonym is not None:
                        files[hash(pseudonym) % parts].write(f"{line} {pseudonym}\n")
        finally:
            for handle in files:
                handle.close()
        total = 0
        for i in range(parts):
            repeats = _repeats(_read_partition(scratch / f"{i}.txt"))
            sink(repeats)
            total += len(repeats)
        return total
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class RepeatCursor:
    """Walks the sorted repeat line numbers alongside the list, a page at a time."""

    def __init__(self, fetch_after: Callable[[int, int], list[int]], *, start_after: int = 0,
                 page: int = 10_000) -> None:
        self._fetch = fetch_after
        self._page = page
        self._buffer: list[int] = []
        self._index = 0
        self._last = start_after
        self._exhausted = False

    def _refill(self) -> None:
        self._buffer = self._fetch(self._last, self._page)
        self._index = 0
        self._exhausted = len(self._buffer) < self._page
        if self._buffer:
            self._last = self._buffer[-1]

    def is_repeat(self, line: int) -> bool:
        """Whether ``line`` repeats an earlier one; lines must be asked in increasing order."""
        while True:
            if self._index < len(self._buffer):
                current = self._buffer[self._index]
                if current > line:
                    return False
                self._index += 1
                if current == line:
                    return True
                continue
            if self._exhausted:
                return False
            self._refill()
            if not self._buffer:
                return False
