"""The run's CSV files: ``OUT`` (``pseudonym,email``) and ``OUT.unresolved.csv``
(``line,pseudonym,problem``), both created with mode 0600 and never overwritten; a resumed run
reopens them only as private regular files, never through a symbolic link (``private_files``).

Rows are encoded here and written as bytes, so the byte count after each chunk is exact and a
resumed run can cut a file back to its last checkpoint.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from .errors import Refused
from .list_formats import SEPARATOR
from .private_files import OPEN_FLAGS, UnsafeFile, open_own_file

RESOLVED_HEADER = ("pseudonym", "email")
UNRESOLVED_HEADER = ("line", "pseudonym", "problem")
SUBJECT_RESOLVED_HEADER = ("subject", "sector", "email")  # lists of pairwise subjects
SUBJECT_UNRESOLVED_HEADER = ("line", "subject", "sector", "problem")


def unresolved_path(out: Path) -> Path:
    return out.with_name(out.name + ".unresolved.csv")


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state")


def encode_rows(rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _plain(text: str, rows: int, fields: int) -> bool:
    """Whether ``text`` (``rows`` rows joined with commas and newlines) has no field csv would quote."""
    return (text.count(",") == rows * (fields - 1) and text.count("\n") == rows
            and '"' not in text and "\r" not in text)


def encode_resolved(rows: Sequence[tuple[str, str]]) -> bytes:
    """``encode_rows`` of ``(pseudonym, email)`` rows, joined directly when no field needs quoting."""
    text = "".join([f"{pseudonym},{email}\n" for pseudonym, email in rows])
    return text.encode("utf-8") if _plain(text, len(rows), 2) else encode_rows(rows)


def encode_unresolved(rows: Sequence[tuple[int, str, str]]) -> bytes:
    """``encode_rows`` of ``(line, pseudonym, problem)`` rows, joined directly when no field needs quoting."""
    text = "".join([f"{line},{pseudonym},{problem}\n" for line, pseudonym, problem in rows])
    return text.encode("utf-8") if _plain(text, len(rows), 3) else encode_rows(rows)


class Layout:
    """The run's CSV columns: ``pseudonym`` for a list of pseudonyms; ``subject,sector`` for pairwise
    subjects (of ``sector``, or each with its own when ``mixed``; an empty sector is a pseudonym)."""

    def __init__(self, *, pairwise: bool = False, sector: str | None = None) -> None:
        self.pairwise = pairwise
        self.sector = sector

    @property
    def resolved_header(self) -> tuple[str, ...]:
        return SUBJECT_RESOLVED_HEADER if self.pairwise else RESOLVED_HEADER

    @property
    def unresolved_header(self) -> tuple[str, ...]:
        return SUBJECT_UNRESOLVED_HEADER if self.pairwise else UNRESOLVED_HEADER

    def split(self, key: str) -> tuple[str, str]:
        """(subject, sector) of an identifier."""
        if self.sector is not None:
            return key, self.sector
        sector, _, subject = key.partition(SEPARATOR)
        return subject, sector

    @property
    def mixed(self) -> bool:
        """Each identifier names its own sector (a list with a sector column)."""
        return self.pairwise and self.sector is None

    def sector_of(self, key: str) -> str:
        """The sector of an identifier ("" for a vault pseudonym)."""
        return self.split(key)[1]

    def resolved(self, rows: Sequence[tuple[str, str]]) -> bytes:
        if not self.pairwise:
            return encode_resolved(rows)
        split = self.split
        full = [(*split(key), email) for key, email in rows]
        text = "".join([f"{subject},{sector},{email}\n" for subject, sector, email in full])
        return text.encode("utf-8") if _plain(text, len(full), 3) else encode_rows(full)

    def unresolved(self, rows: Sequence[tuple[int, str, str]]) -> bytes:
        if not self.pairwise:
            return encode_unresolved(rows)
        full = [(line, *(self.split(key) if key else ("", "")), problem) for line, key, problem in rows]
        text = "".join([f"{line},{subject},{sector},{problem}\n" for line, subject, sector, problem in full])
        return text.encode("utf-8") if _plain(text, len(full), 4) else encode_rows(full)


class CsvFile:
    """Appends encoded rows to a binary stream and counts the bytes written."""

    def __init__(self, handle: BinaryIO, position: int, *, durable: bool) -> None:
        self._handle = handle
        self.position = position
        self._durable = durable

    @classmethod
    def create(cls, path: Path, header: Sequence[str]) -> CsvFile:
        """A new file, mode 0600 from the start (no window in which others could open it)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o600)
        except FileExistsError as exc:
            raise Refused(f"{path} already exists; refusing to overwrite it") from exc
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "wb")
        out = cls(handle, 0, durable=True)
        out.write(encode_rows([header]))
        return out

    @classmethod
    def reopen(cls, path: Path, position: int) -> CsvFile:
        """An existing file of an interrupted run, cut back to ``position`` bytes.

        Never through a symbolic link, and only a private regular file of ours (``open_own_file``).
        """
        try:
            fd = open_own_file(path, os.O_RDWR)
        except UnsafeFile as exc:
            raise Refused(f"cannot resume: {exc}") from exc
        info = os.fstat(fd)
        if info.st_size < position:
            os.close(fd)
            raise Refused(f"{path} is shorter than its last checkpoint; it was changed, refusing to resume")
        os.ftruncate(fd, position)
        handle = os.fdopen(fd, "r+b")
        handle.seek(position)
        return cls(handle, position, durable=True)

    @classmethod
    def stream(cls, handle: BinaryIO, header: Sequence[str]) -> CsvFile:
        out = cls(handle, 0, durable=False)
        out.write(encode_rows([header]))
        return out

    def write(self, data: bytes) -> None:
        if data:
            self._handle.write(data)
            self.position += len(data)

    def sync(self) -> None:
        """Flush to the operating system and, for files, to the disk."""
        self._handle.flush()
        if self._durable:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.flush()
        if self._durable:
            self._handle.close()
