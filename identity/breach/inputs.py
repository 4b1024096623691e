"""The list of affected pseudonyms: one per line, read as a stream with line numbers.

Surrounding whitespace is ignored, blank lines are skipped, and base32 is case-insensitive, so
``MFRGGZDFMZTWQ2LKNNWG23TPOA`` is accepted too. Anything else is *malformed*: it is reported by
line number only, because a wrong file could hold anything (e-mail addresses included). A line
longer than ``MAX_LINE_BYTES`` is skipped to its end without being held in memory.

The list is named by the SHA-256 of its bytes (what ``sha256sum FILE`` prints): the audit log,
four-eyes requests and resumable runs all refer to it that way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

MAX_LINE_BYTES = 512
READ_CHUNK = 1 << 20
_PSEUDONYM = re.compile(rb"[A-Za-z2-7]{26}")
_CLEAN_BLOCK = re.compile(rb"(?:[a-z2-7]{26}\n)*")

Entry = Tuple[int, Optional[str]]
"""One non-blank line: its number (from 1) and its pseudonym, or ``None`` when malformed."""


def parse(raw: bytes) -> str | None:
    """The pseudonym on one line, or None."""
    text = raw.strip()
    if _PSEUDONYM.fullmatch(text) is None:
        return None
    return text.decode("ascii").lower()


def _entries_of(body: bytes, first: int) -> list[Entry]:
    """The entries in ``body`` (whole lines, each ending in a newline), numbered from ``first``."""
    if _CLEAN_BLOCK.fullmatch(body):  # the usual case: one lower-case pseudonym per line
        names = body.decode("ascii").split("\n")
        names.pop()
        return list(zip(range(first, first + len(names)), names, strict=True))
    entries: list[Entry] = []
    for number, raw in enumerate(body.split(b"\n")[:-1], first):
        if raw.strip():
            entries.append((number, parse(raw) if len(raw) <= MAX_LINE_BYTES else None))
    return entries


EntriesOf = Callable[[bytes, int], List[Entry]]
LineParser = Callable[[bytes], Optional[str]]


def read_entries(handle: BinaryIO, *, skip_through: int = 0, entries_of: EntriesOf | None = None,
                 parse_line: LineParser = parse) -> Iterator[Entry]:
    """Every non-blank line of ``handle`` after line ``skip_through``, read in large blocks.

    Memory is bounded by the block size: an over-long line is dropped as it streams past and
    reported as malformed. ``entries_of``/``parse_line`` read another line format (the breach
    path's lists with a sector column, ``list_formats``).
    """
    entries_of = entries_of or _entries_of
    number, carry, overlong = 0, b"", False
    while block := handle.read(READ_CHUNK):
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # no line ends in this block
            carry += block
            if len(carry) > MAX_LINE_BYTES:
                carry, overlong = b"", True
            continue
        body, carry = carry + block[:cut], block[cut:]
        if overlong:  # the first line of body is the end of an over-long line: keep it malformed
            body = b"#" * (MAX_LINE_BYTES + 1) + body[body.index(b"\n"):]
            overlong = False
        if len(carry) > MAX_LINE_BYTES:
            carry, overlong = b"", True
        first = number + 1
        number += body.count(b"\n")
        if skip_through >= number:
            continue
        entries = entries_of(body, first)
        yield from (entries if skip_through < first else [e for e in entries if e[0] > skip_through])
    if (carry.strip() or overlong) and number + 1 > skip_through:
        yield (number + 1, None if overlong else parse_line(carry))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def count_lines(path: Path) -> int:
    """Lines in ``path`` (for the progress bar's total)."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_CHUNK), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def spool(stream: BinaryIO, directory: Path | None = None) -> Path:
    """Copy a stream (standard input) to a new private file, so it can be hashed and re-read."""
    fd, name = tempfile.mkstemp(prefix="pseudonyms-", suffix=".txt", dir=directory)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stream, out, READ_CHUNK)
    return Path(name)
