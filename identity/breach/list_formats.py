"""The three forms of a breach list, and the digest that names each for four-eyes approval.

* **pseudonyms**: one vault pseudonym a line (``inputs``), as before pairwise subjects existed;
* **one sector**: the same lines, each a pairwise subject of the sector given with ``--sector
  NAME`` (a data set leaked by one service);
* **mixed**: a CSV whose first line is the header ``subject,sector`` (or ``sector,subject``;
  ``pseudonym`` or ``sub`` may name the subject column), then one ``SUBJECT,SECTOR`` a line; an
  empty sector marks a vault pseudonym. Its identifiers are ``SECTOR<TAB>SUBJECT``.

The digest of a one-sector list binds the sector: an approval of a list of sector A's subjects
does not approve resolving the same lines as another sector's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..pairwise.sectors import sector_problem
from .errors import Refused
from .inputs import _PSEUDONYM, MAX_LINE_BYTES, Entry, file_sha256, read_entries

PSEUDONYMS, ONE_SECTOR, MIXED = "pseudonyms", "sector", "mixed"
SEPARATOR = "\t"  # between sector and subject in a mixed list's identifiers: in neither of them
SUBJECT_COLUMNS = (b"subject", b"pseudonym", b"sub")


@dataclass(frozen=True)
class ListFormat:
    """How to read one list, and its kind (``PSEUDONYMS``, ``ONE_SECTOR`` or ``MIXED``)."""

    kind: str = PSEUDONYMS
    sector: str | None = None
    subject_first: bool = True

    @property
    def pairwise(self) -> bool:
        return self.kind != PSEUDONYMS

    def entries(self, handle: BinaryIO, *, skip_through: int = 0) -> Iterator[Entry]:
        """The list's entries (line number, identifier or None when malformed), after ``skip_through``."""
        if self.kind != MIXED:
            return read_entries(handle, skip_through=skip_through)
        return read_entries(handle, skip_through=max(skip_through, 1),  # line 1 is the header
                            entries_of=self._entries_of, parse_line=self.parse)

    def parse(self, raw: bytes) -> str | None:
        """One line of a mixed list → ``SECTOR<TAB>SUBJECT``, or None when malformed."""
        first, comma, second = raw.strip().partition(b",")
        if not comma or b"," in second:
            return None
        subject, sector = (first, second) if self.subject_first else (second, first)
        subject, sector = subject.strip(), sector.strip()
        if _PSEUDONYM.fullmatch(subject) is None:
            return None
        try:
            sector_text = sector.decode("ascii")
        except UnicodeDecodeError:
            return None
        if sector_text and sector_problem(sector_text):
            return None
        return sector_text + SEPARATOR + subject.decode("ascii").lower()

    def _entries_of(self, body: bytes, first: int) -> list[Entry]:
        entries: list[Entry] = []
        for number, raw in enumerate(body.split(b"\n")[:-1], first):
            if raw.strip():
                entries.append((number, self.parse(raw) if len(raw) <= MAX_LINE_BYTES else None))
        return entries


def _header(line: bytes) -> bool | None:
    """Whether a mixed list's header puts the subject first; None when ``line`` is no such header."""
    names = [name.strip().lower() for name in line.strip().split(b",")]
    if len(names) != 2 or b"sector" not in names:
        return None
    other = names[1 - names.index(b"sector")]
    return (names[0] != b"sector") if other in SUBJECT_COLUMNS else None


def detect(path: Path, sector: str | None) -> ListFormat:
    """The form of the list at ``path`` given ``--sector`` (or None); ``Refused`` when they disagree."""
    if sector is not None:
        problem = sector_problem(sector)
        if problem:
            raise Refused(f"--sector: {problem}")
    try:
        with open(path, "rb") as handle:
            first = handle.readline(MAX_LINE_BYTES + 1)
    except OSError as exc:
        raise Refused(f"cannot read the list {path}: {exc.strerror}") from exc
    subject_first = _header(first)
    if subject_first is not None:
        if sector is not None:
            raise Refused("the list has a sector column: give it without --sector")
        return ListFormat(MIXED, subject_first=subject_first)
    return ListFormat(ONE_SECTOR, sector) if sector is not None else ListFormat()


def list_digest(path: Path, sector: str | None = None) -> str:
    """What four-eyes requests, runs and the audit log call the list: ``sha256sum FILE`` for a list of
    pseudonyms or a mixed list; for one sector's subjects, a SHA-256 binding that sector to it."""
    sha = file_sha256(path)
    if sector is None:
        return sha
    bound = b"identity-breach-list/v1\x00" + sector.encode("ascii") + b"\x00" + bytes.fromhex(sha)
    return hashlib.sha256(bound).hexdigest()
