"""Reading the pseudonym list (streamed, numbered, malformed lines) and finding repeated pseudonyms."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from identity.breach import dedupe, inputs
from identity.breach.dedupe import RepeatCursor, find_repeats
from identity.breach.inputs import count_lines, file_sha256, read_entries, spool
from identity.vault import new_pseudonym

P = "mfrggzdfmztwq2lknnwg23tpoa"
Q = "onswg4tforrw6zdfmv2gk3lbnr"


def entries(data: bytes, **kwargs) -> list:
    return list(read_entries(io.BytesIO(data), **kwargs))


@pytest.mark.parametrize("block", [1 << 20, 7, 27, 64])
def test_lines_are_numbered_and_malformed_ones_reported(monkeypatch, block):
    monkeypatch.setattr(inputs, "READ_CHUNK", block)
    data = f"{P}\n\n  {Q.upper()} \r\nalice@example.org\n{'z' * 2000}\n{P}\n{'y' * 600}\n{Q}".encode()
    assert entries(data) == [(1, P), (3, Q), (4, None), (5, None), (6, P), (7, None), (8, Q)]
    assert entries(data, skip_through=5) == [(6, P), (7, None), (8, Q)]
    assert entries(b"x" * 5000) == [(1, None)] and entries(b"") == [] and entries(b"\n\n") == []


def test_a_line_without_newlines_is_never_held_whole(monkeypatch):
    monkeypatch.setattr(inputs, "READ_CHUNK", 1024)

    class Endless(io.RawIOBase):
        """10 MB without a newline, then one pseudonym; fails if read in one piece."""

        def __init__(self) -> None:
            self.left = 10 * 1024 * 1024

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            assert 0 < size <= 1024, "read without a bound"
            if self.left > 0:
                n = min(size, self.left)
                self.left -= n
                return b"q" * n
            if self.left == 0:
                self.left = -1
                return f"\n{P}\n".encode()
            return b""

    assert list(read_entries(cast(BinaryIO, Endless()))) == [(1, None), (2, P)]  # a stand-in: read() is all it uses


def test_the_list_is_named_by_its_sha256_and_stdin_is_spooled_privately(tmp_path: Path):
    data = f"{P}\n{Q}\n".encode()
    path = spool(io.BytesIO(data), tmp_path)
    assert path.read_bytes() == data and oct(path.stat().st_mode & 0o777) == "0o600"
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert count_lines(path) == 2


def collect(path: Path, **kwargs) -> list[int]:
    found: list[int] = []
    total = find_repeats(path, found.extend, **kwargs)
    assert total == len(found)
    return sorted(found)


@pytest.mark.parametrize(("partition_lines", "flush_lines"), [(100_000, 65_536), (7, 65_536), (7, 3)])
def test_repeats_are_the_later_occurrences_only(tmp_path: Path, monkeypatch, partition_lines, flush_lines):
    monkeypatch.setattr(dedupe, "PARTITION_LINES", partition_lines)
    monkeypatch.setattr(dedupe, "FLUSH_LINES", flush_lines)  # 3: several records per partition file
    people = [new_pseudonym() for _ in range(40)]
    lines = people + [people[3], "garbage", people[3], people[39], ""] + [new_pseudonym() for _ in range(20)]
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(lines) + "\n")
    assert collect(listing, workdir=tmp_path) == [41, 43, 44]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.txt"]  # scratch partitions removed


def test_repeat_cursor_merges_pages_in_order():
    repeats = sorted(random.sample(range(1, 10_000), 700))
    fetch = lambda after, limit: [n for n in repeats if n > after][:limit]  # noqa: E731
    cursor = RepeatCursor(fetch, page=50)
    assert [n for n in range(1, 10_000) if cursor.is_repeat(n)] == repeats
    resumed = RepeatCursor(fetch, start_after=5000, page=50)
    assert [n for n in range(5001, 10_000) if resumed.is_repeat(n)] == [n for n in repeats if n > 5000]


def test_repeat_cursor_hands_out_a_chunks_repeats_at_once():
    repeats = sorted(random.sample(range(1, 10_000), 700))
    fetch = lambda after, limit: [n for n in repeats if n > after][:limit]  # noqa: E731
    for start, page in ((0, 50), (5000, 7), (0, 10_000)):
        cursor = RepeatCursor(fetch, start_after=start, page=page)
        found = [cursor.through(last) for last in range(start + 33, 10_033, 33)]
        assert sorted(n for chunk in found for n in chunk) == [n for n in repeats if n > start]
        assert all(n <= last for chunk, last in zip(found, range(start + 33, 10_033, 33)) for n in chunk)
