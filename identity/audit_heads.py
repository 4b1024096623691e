"""The audit chain's heads, exported on every append to an append-only sink outside the store.

Whoever can write the store can rewrite the chain and re-link it; they cannot take back a head that
already left. Each append writes one line — ``{"at": …, "hash": "…", "seq": N, "signer": "…"}`` — to the
sinks named by ``IDENTITY_AUDIT_HEADS`` (comma-separated):

- ``file:///abs/path``: a file opened ``O_APPEND | O_NOFOLLOW`` (mode 0600 when created); make it
  append-only for the service user too (``chattr +a``) and ship it off the host (docs/deploy.md);
- ``syslog:`` (``/dev/log``) or ``syslog:/path/of/socket``: one message per head, tag ``identity-audit``;
- ``none``: no export (development only; refused in production).

Unset: with the embedded SQLite store, ``<database>.audit-heads.jsonl`` beside the database; with
MongoDB, ``syslog:`` (a file beside a remote database does not exist, and a container's local file
dies with it; the host's syslog/journal is outside both the database and the service's files).

Any write error fails the append (the caller answers 503): a head is never skipped silently. Writers
in several processes append concurrently, so lines may be out of ``seq`` order; readers accept that.
This module uses the standard library only (``identity.config`` validates the setting with it).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol
from urllib.parse import unquote

DEFAULT_SYSLOG_SOCKET = "/dev/log"
SYSLOG_TAG = "identity-audit"
SYSLOG_PRIORITY = 16 * 8 + 6  # facility local0, severity info
SYSLOG_TIMEOUT_SECONDS = 5.0
HEADS_SUFFIX = ".audit-heads.jsonl"
NONE = "none"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_HEAD_JSON = re.compile(r'\{"at":')


class HeadSink(Protocol):
    """Somewhere heads go. ``export`` raises ``OSError`` when the head did not get there."""

    def describe(self) -> str: ...

    def check(self) -> None:
        """Raise ``OSError`` if the sink cannot take heads now (called at start-up)."""

    def export(self, line: bytes) -> None: ...


def head_line(record: Mapping[str, Any]) -> bytes:
    """One head: the record's seq, hash, time and signer, as one JSON line."""
    head = {"seq": record["seq"], "hash": record["hash"], "at": record.get("at"), "signer": record.get("signer")}
    return json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


@dataclass(frozen=True)
class FileHeads:
    """An append-only file; opened for each head, so log rotation and forked workers need no care."""

    path: Path

    def describe(self) -> str:
        return f"file {self.path}"

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file")
        return fd

    def check(self) -> None:
        os.close(self._open())

    def export(self, line: bytes) -> None:
        fd = self._open()
        try:
            written = os.write(fd, line)  # one write: O_APPEND keeps concurrent lines whole
            if written != len(line):
                raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes): disk full?")
            getattr(os, "fdatasync", os.fsync)(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class SyslogHeads:
    """The local syslog socket (datagrams): errors are raised, unlike ``logging.handlers.SysLogHandler``."""

    address: str = DEFAULT_SYSLOG_SOCKET

    def describe(self) -> str:
        return f"syslog {self.address}"

    def _send(self, message: bytes) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SYSLOG_TIMEOUT_SECONDS)
            sock.connect(self.address)
            if message:
                sock.send(message)

    def check(self) -> None:
        self._send(b"")

    def export(self, line: bytes) -> None:
        self._send(f"<{SYSLOG_PRIORITY}>{SYSLOG_TAG}[{os.getpid()}]: ".encode("ascii") + line.rstrip(b"\n"))


@dataclass(frozen=True)
class AllHeads:
    """Several sinks; a head must reach every one."""

    sinks: tuple[HeadSink, ...]

    def describe(self) -> str:
        return " and ".join(s.describe() for s in self.sinks)

    def check(self) -> None:
        for sink in self.sinks:
            sink.check()

    def export(self, line: bytes) -> None:
        for sink in self.sinks:
            sink.export(line)


def parse_heads_spec(spec: str) -> tuple[HeadSink, ...]:
    """``file:///p,syslog:`` → sinks (empty for ``none``); ``ValueError`` names what is wrong."""
    sinks: list[HeadSink] = []
    parts = [p.strip() for p in spec.split(",")]
    for part in parts:
        if part == NONE:
            if len(parts) > 1:
                raise ValueError("'none' cannot be combined with other sinks")
            return ()
        if part.startswith("file://"):
            path = unquote(part[len("file://"):])
            if not path.startswith("/") or path.endswith("/"):
                raise ValueError(f"{part!r}: a file sink is file:///absolute/path/of/a/file")
            sinks.append(FileHeads(Path(path)))
        elif part == "syslog:" or (part.startswith("syslog:/") and not part.startswith("syslog://")):
            address = part[len("syslog:"):] or DEFAULT_SYSLOG_SOCKET
            sinks.append(SyslogHeads(address))
        else:
            raise ValueError(f"{part!r}: use file:///path, syslog:, syslog:/path/of/socket or none")
    return tuple(sinks)


def heads_spec_problems(spec: str | None, *, production: bool) -> list[str]:
    """Configuration problems of ``IDENTITY_AUDIT_HEADS`` (for ``load_settings``)."""
    if spec is None:
        return []
    try:
        sinks = parse_heads_spec(spec)
    except ValueError as exc:
        return [f"IDENTITY_AUDIT_HEADS: {exc}"]
    if not sinks and production:
        return ["IDENTITY_AUDIT_HEADS=none is refused in production: the audit chain's heads must leave the store"]
    return []


def default_heads_spec(db_uri: str) -> str:
    """What an unset ``IDENTITY_AUDIT_HEADS`` means for this store (see the module docstring)."""
    if db_uri.startswith("sqlite:///"):
        database = Path(db_uri[len("sqlite:///"):])
        return "file://" + str(database.absolute()) + HEADS_SUFFIX
    return "syslog:"


def heads_sink(spec: str | None, db_uri: str) -> HeadSink | None:
    """The sink for a setting (None: heads are not exported, development only)."""
    sinks = parse_heads_spec(spec if spec is not None else default_heads_spec(db_uri))
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else AllHeads(sinks)


def readable_files(sink: HeadSink | None) -> list[Path]:
    """The files among a sink's destinations (what ``verify`` can read by default)."""
    if isinstance(sink, FileHeads):
        return [sink.path]
    if isinstance(sink, AllHeads):
        return [s.path for s in sink.sinks if isinstance(s, FileHeads)]
    return []


# -- reading heads back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedHead:
    seq: int
    hash: str
    at: float | None
    signer: str | None
    source: str  # "path:line"


@dataclass(frozen=True)
class UnreadableLine:
    """A line (or a whole file) that yields no head, and why."""

    source: str
    reason: str
    missing_file: bool = False


def read_heads(paths: Iterable[Path]) -> Iterator[ExportedHead | UnreadableLine]:
    """Heads from files of head lines, also with a prefix per line (syslog files, ``journalctl`` output).

    Blank lines are skipped; a line with no well-formed head, and a file that cannot be read, come
    back as ``UnreadableLine`` (a missing file with ``missing_file`` set).
    """
    for path in paths:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            yield UnreadableLine(str(path), "does not exist", missing_file=True)
            continue
        except OSError as exc:
            yield UnreadableLine(str(path), f"cannot be read ({exc.strerror})")
            continue
        with handle:
            for number, raw in enumerate(handle, 1):
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                head = _parse_head(line, f"{path}:{number}")
                yield head if head is not None else UnreadableLine(f"{path}:{number}", "is not an audit head")


def _parse_head(line: str, source: str) -> ExportedHead | None:
    starts = [m.start() for m in _HEAD_JSON.finditer(line)]
    if not starts:
        return None
    try:
        doc = json.loads(line[starts[-1]:])  # the last one: a torn line is followed by a whole one
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    seq, digest = doc.get("seq"), doc.get("hash")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not isinstance(digest, str) \
            or not _HASH.match(digest):
        return None
    at, signer = doc.get("at"), doc.get("signer")
    return ExportedHead(seq, digest, at if isinstance(at, (int, float)) else None,
                        signer if isinstance(signer, str) else None, source)


# -- checking heads against the chain ----------------------------------------------------------------


@dataclass
class HeadsFinding:
    """What the exported heads say about a chain (counts, and the telling examples; see ``compare_heads``)."""

    checked: int = 0
    matched: int = 0
    latest: int = 0
    beyond_end: int = 0
    furthest_beyond: ExportedHead | None = None
    mismatched: int = 0
    first_mismatch: ExportedHead | None = None
    unreadable: int = 0
    first_unreadable: UnreadableLine | None = None
    missing_files: tuple[str, ...] = ()


def compare_heads(heads: Iterable[ExportedHead | UnreadableLine], chain_hash_at: Callable[[int], str | None],
                  chain_end: int) -> HeadsFinding:
    """Check each exported head against the chain: ``chain_hash_at(seq)`` is the chain's hash there (or None).

    A head beyond ``chain_end`` means records were cut off the end; a head whose record has another
    hash means the chain was rewritten from there on (every head: the whole chain was replaced).
    """
    found = HeadsFinding()
    for head in heads:
        if isinstance(head, UnreadableLine):
            if head.missing_file:
                found.missing_files += (head.source,)
            else:
                found.unreadable += 1
                found.first_unreadable = found.first_unreadable or head
            continue
        found.checked += 1
        found.latest = max(found.latest, head.seq)
        if head.seq > chain_end:
            found.beyond_end += 1
            if found.furthest_beyond is None or head.seq > found.furthest_beyond.seq:
                found.furthest_beyond = head
            continue
        actual = chain_hash_at(head.seq)
        if actual is None:
            continue  # the chain walk reports the missing record itself
        if actual == head.hash:
            found.matched += 1
        else:
            found.mismatched += 1
            if found.first_mismatch is None or head.seq < found.first_mismatch.seq:
                found.first_mismatch = head
    return found
