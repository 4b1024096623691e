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
import struct
import tempfile
from array import array
from bisect import bisect_right
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

from .inputs import Entry, read_entries

PARTITION_LINES = 100_000
BYTES_PER_LINE = 27  # a pseudonym and a newline
MAX_PARTITIONS = 4096
FLUSH_LINES = 65_536  # pseudonyms held in memory while partitioning, over all partitions
DupSink = Callable[[Iterable[int]], None]
EntryReader = Callable[[BinaryIO], Iterator[Entry]]


def _partitions_for(path: Path) -> int:
    estimated = os.path.getsize(path) // BYTES_PER_LINE + 1
    return min(MAX_PARTITIONS, max(1, -(-estimated // PARTITION_LINES)))


def _repeats(lines: Sequence[int], names: Sequence[str]) -> list[int]:
    """Line numbers of repeats among ``names`` (on ``lines``, ascending; one partition's worth)."""
    if len(set(names)) == len(names):  # the usual case, answered at C speed
        return []
    seen: set[str] = set()
    repeats = []
    for line, pseudonym in zip(lines, names, strict=True):
        if pseudonym in seen:
            repeats.append(line)
        else:
            seen.add(pseudonym)
    return repeats


class _Partition:
    """One scratch file of records: a header, the line numbers (native integers), the pseudonyms."""

    _HEADER = struct.Struct("<qq")  # how many, bytes of pseudonyms

    def __init__(self, directory: Path, index: int) -> None:
        self._path = directory / f"{index}.bin"
        self._handle = open(self._path, "wb")
        self.names: list[str] = []
        self.lines = array("q")

    def flush(self) -> None:
        if self.names:
            block = ("\n".join(self.names) + "\n").encode("ascii")
            self._handle.write(self._HEADER.pack(len(self.names), len(block)))
            self.lines.tofile(self._handle)
            self._handle.write(block)
            self.names, self.lines = [], array("q")

    def close(self) -> None:
        self._handle.close()

    def read(self) -> tuple[array, list[str]]:
        lines, names = array("q"), []
        with open(self._path, "rb") as handle:
            while header := handle.read(self._HEADER.size):
                count, size = self._HEADER.unpack(header)
                lines.fromfile(handle, count)
                names += handle.read(size).decode("ascii").split("\n")
                names.pop()
        return lines, names


def find_repeats(path: Path, sink: DupSink, *, workdir: Path | None = None,
                 entries: EntryReader = read_entries) -> int:
    """Pass the line numbers of repeated identifiers to ``sink`` (per partition, each batch sorted).

    ``entries`` reads the list (``ListFormat.entries`` for lists of pairwise subjects). Returns how
    many repeats there are.
    """
    parts = _partitions_for(path)
    if parts == 1:
        with open(path, "rb") as handle:
            found = [(line, pseudonym) for line, pseudonym in entries(handle) if pseudonym is not None]
        repeats = _repeats([line for line, _ in found], [pseudonym for _, pseudonym in found])
        sink(repeats)
        return len(repeats)
    scratch = Path(tempfile.mkdtemp(prefix="breach-dedupe-", dir=workdir))  # mode 0700
    try:
        partitions: list[_Partition] = []
        try:
            partitions += (_Partition(scratch, i) for i in range(parts))
            held = 0
            with open(path, "rb") as handle:
                for line, pseudonym in entries(handle):
                    if pseudonym is not None:
                        partition = partitions[hash(pseudonym) % parts]
                        partition.names.append(pseudonym)
                        partition.lines.append(line)
                        held += 1
                        if held >= FLUSH_LINES:
                            for each in partitions:
                                each.flush()
                            held = 0
            for each in partitions:
                each.flush()
        finally:
            for each in partitions:
                each.close()
        total = 0
        for partition in partitions:
            repeats = _repeats(*partition.read())
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

    def through(self, last: int) -> set[int]:
        """The repeat line numbers up to ``last`` not yet passed (``last`` must not decrease)."""
        found: set[int] = set()
        while True:
            buffer, index = self._buffer, self._index
            end = bisect_right(buffer, last, index)
            found.update(buffer[index:end])
            self._index = end
            if end < len(buffer) or self._exhausted:
                return found
            self._refill()
            if not self._buffer:
                return found

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
