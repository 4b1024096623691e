"""Append-only, hash-chained, signed audit log in the vault's store, its heads exported outside it.

Each record carries the SHA-256 of the previous record (``prev_hash``), its own hash over a canonical
JSON encoding of every field, and an Ed25519 ``signature`` over that hash by its ``signer`` — the
service audit key, or the acting officer's own key (``identity.audit_signing``). Sequence numbers are
dense (1, 2, 3, …) and unique. After each append the new head (seq, hash, time, signer) goes to an
append-only sink outside the store (``identity.audit_heads``).

So a changed, deleted, inserted or reordered record breaks the chain at a point ``verify_chain``
names; re-linking the chain after a change needs a key the store does not hold; and a chain cut
short, or rewritten and re-signed with a stolen key, no longer contains the heads exported earlier.
Records name actors, actions, reasons, incident ids, counts and hashes of pseudonym lists — never
an e-mail address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from .audit_heads import ExportedHead, HeadSink, HeadsFinding, UnreadableLine, compare_heads, head_line, heads_sink
from .audit_index import index_record
from .audit_signing import AuditSigner, TrustedKeys, load_service_signer
from .keys.files import KeyPaths
from .metrics import count_audit_append, count_audit_head_failure
from .store import Collection, DuplicateKeyError, Gt, Lt, Order, Store, StoreUnavailable

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
APPEND_ATTEMPTS = 50
VERIFY_BATCH = 1000
MAX_REMEMBERED_GAP = 1_000_000  # records; a bigger jump in seq is tampering, reported without padding
_DIGEST = 32

AUDIT_LOG = Collection(
    name="audit_log",
    key="seq",
    fields={
        "seq": int,
        "at": float,
        "actor": str,
        "action": str,
        "outcome": str,
        "reason": str,
        "incident": str,
        "counts": dict,
        "subjects_hash": str,
        "details": dict,
        "prev_hash": str,
        "hash": str,
        "signer": str,
        "signature": str,
    },
    indexed=("incident", "action"),
    # The head decides the next record's seq and prev_hash: read only what a failover cannot roll back, or a
    # record chained onto one that is then lost would leave a hole in the chain (writes: durable, majority).
    majority_reads=True,
)
_HASHED_FIELDS = tuple(name for name in AUDIT_LOG.fields if name not in ("hash", "signer", "signature"))


class HeadsUnavailable(StoreUnavailable):
    """The audit heads sink cannot take a head: the append fails (answered as 503), never a silent gap."""


class AuditSignerMissing(RuntimeError):
    """An append on an ``AuditLog`` built without a signer (a wiring mistake: every record is signed)."""


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of every field but ``hash`` and ``signature`` (absent fields
    count as null; ``signer`` counts only when set, so records written before signing keep their hash)."""
    fields = {name: record.get(name) for name in _HASHED_FIELDS}
    if record.get("signer") is not None:
        fields["signer"] = record["signer"]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def subjects_hash(pseudonyms: list[str] | tuple[str, ...]) -> str:
    """A hash naming a list of pseudonyms without listing them (order-independent)."""
    digest = hashlib.sha256()
    for pseudonym in sorted(set(pseudonyms)):
        digest.update(pseudonym.encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of ``verify_chain``: ok with the head, or every kind of problem found (one line each).

    ``problem`` and ``first_bad_seq`` are the first problem and the lowest record at fault (None when
    the fault is past the chain's end). ``heads`` is None when no exported heads were checked.
    """

    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: tuple[str, ...] = ()
    signers: Mapping[str, int] = field(default_factory=dict)
    unsigned_legacy: int = 0
    heads: HeadsFinding | None = None


class AuditLog:
    """Appends signed records to the chain, exports each new head, and checks the chain.

    :param signer: signs every appended record (``ServiceSigner`` or ``OfficerSigner``); without one
        the log can be read and verified but ``append`` raises ``AuditSignerMissing``.
    :param heads: where each new head goes; None exports nothing (tests, readers). The service and
        scripts build theirs with ``open_audit_log``, which always has one outside development.
    """

    def __init__(self, store: Store, *, signer: AuditSigner | None = None, heads: HeadSink | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._signer = signer
        self._heads = heads
        self._clock = clock

    @property
    def signer(self) -> AuditSigner | None:
        return self._signer

    @property
    def heads(self) -> HeadSink | None:
        return self._heads

    def head(self) -> dict[str, Any] | None:
        """The last record that a majority of a MongoDB replica set has (``AUDIT_LOG.majority_reads``): none is
        chained onto a record a failover may still roll back. An append that meets such a record's seq (a
        duplicate key) retries until it is majority-committed or rolled back."""
        return next(iter(self._store.find(AUDIT_LOG, {}, order=Order("seq", descending=True), limit=1)), None)

    def append(
        self,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        reason: str | None = None,
        incident: str | None = None,
        counts: Mapping[str, int] | None = None,
        subjects: list[str] | tuple[str, ...] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one signed record at the chain's head and export the new head.

        Concurrent writers retry on the unique ``seq``. Raises ``AuditSignerMissing`` without a signer,
        ``ValueError`` if an officer's key would sign another actor's record, ``StoreUnavailable`` if
        the store fails and ``HeadsUnavailable`` if the record is stored but its head cannot be exported.
        """
        signer = self._signer
        if signer is None:
            raise AuditSignerMissing("this audit log has no signer; build it with open_audit_log() or signer=")
        if not signer.vouches_for(actor):
            raise ValueError(f"{signer.signer_id} cannot sign a record of actor {actor!r}")
        for attempt in range(APPEND_ATTEMPTS):
            head = self.head()
            record: dict[str, Any] = {
                "seq": 1 if head is None else head["seq"] + 1,
                "at": round(self._clock(), 6),
                "actor": actor,
                "action": action,
                "outcome": outcome,
                "reason": reason,
                "incident": incident,
                "counts": dict(counts) if counts else None,
                "subjects_hash": subjects_hash(subjects) if subjects is not None else None,
                "details": dict(details) if details else None,
                "prev_hash": GENESIS_HASH if head is None else head["hash"],
                "signer": signer.signer_id,
            }
            record["hash"] = record_hash(record)
            record["signature"] = signer.sign(record["hash"])
            try:
                self._store.insert(AUDIT_LOG, record)
            except DuplicateKeyError:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # another writer took this seq
                continue
            index_record(self._store, record)  # the rights export finds a person's records through it
            count_audit_append(action)
            self._export(record)
            return record
        raise StoreUnavailable("the audit log is too busy to append; try again")

    def _export(self, record: Mapping[str, Any]) -> None:
        if self._heads is None:
            return
        try:
            self._heads.export(head_line(record))
        except OSError as exc:
            count_audit_head_failure()
            log.error("audit record %s is stored but its head was not exported to %s: %s",
                      record["seq"], self._heads.describe(), exc)
            raise HeadsUnavailable(
                f"audit record {record['seq']} is stored but its head could not be exported to "
                f"{self._heads.describe()} ({exc}); audited actions fail until the heads sink works"
            ) from exc

    def records(self, *, incident: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record in chain order (streamed in batches), optionally for one incident."""
        last = 0
        while True:
            where: dict[str, Any] = {"seq": Gt(last)}
            if incident is not None:
                where["incident"] = incident
            batch = list(self._store.find(AUDIT_LOG, where, order=Order("seq"), limit=VERIFY_BATCH))
            if not batch:
                return
            yield from batch
            last = batch[-1]["seq"]

    def verify_chain(
        self,
        *,
        keys: TrustedKeys,
        heads: Iterable[ExportedHead | UnreadableLine] | None = None,
        expected_head: str | None = None,
    ) -> ChainReport:
        """Walk the chain; report every kind of fault, each once with its first record.

        :param keys: the public keys trusted to have signed records (``TrustedKeys``).
        :param heads: heads exported on append (``read_heads``), in any order. Each must be in the
            chain: one past its end shows records cut off the end, one with another hash a rewrite.
            None skips this check (then a cut-off tail or a re-signed rewrite cannot show).
        :param expected_head: a head hash kept elsewhere by hand; a record with that hash must still
            be in the chain.
        """
        walk = _ChainWalk(keys)
        for record in self.records():
            walk.visit(record)
        walk.finish()
        problems = walk.problems()
        outside = self._store.count(AUDIT_LOG, {"seq": Lt(1)})
        if outside:  # no chain passes through them, yet a reader that looks records up by action would find them
            problems.append(_Problem(None, f"{outside} record(s) stored before record 1, outside the chain: inserted"))
        finding = None
        if heads is not None:
            finding = compare_heads(heads, walk.hash_at, walk.end)
            problems.extend(_heads_problems(finding, walk.count, walk.end))
        if expected_head is not None and not walk.contains(expected_head):
            problems.append(_Problem(
                None, f"no record has the expected head {expected_head}: records after record {walk.count} "
                "were removed, or the chain was rewritten"))
        seqs = [p.seq for p in problems if p.seq is not None]
        return ChainReport(
            ok=not problems, count=walk.count, head_hash=walk.prev_hash,
            first_bad_seq=min(seqs) if seqs else None, problem=problems[0].text if problems else None,
            problems=tuple(p.text for p in problems), signers=dict(walk.signers),
            unsigned_legacy=walk.unsigned_legacy, heads=finding,
        )


@dataclass(frozen=True)
class _Problem:
    seq: int | None
    text: str


class _ChainWalk:
    """One pass over the chain in ``seq`` order: links, hashes, signatures, and each record's hash
    remembered compactly (32 bytes a record) for the heads check."""

    def __init__(self, keys: TrustedKeys) -> None:
        self._keys = keys
        self.expected_seq, self.prev_hash, self.count = 1, GENESIS_HASH, 0
        self.signers: Counter[str] = Counter()
        self.unsigned_legacy = 0
        self._signed_seen = False
        self._hashes = bytearray()
        self._found: dict[str, list[Any]] = {}  # kind -> [first problem, count]

    @property
    def end(self) -> int:
        return self.expected_seq - 1

    def _add(self, kind: str, seq: int | None, text: str) -> None:
        entry = self._found.setdefault(kind, [_Problem(seq, text), 0])
        entry[1] += 1

    def visit(self, record: dict[str, Any]) -> None:
        seq = record["seq"]
        linked = True
        if seq > self.expected_seq:
            upto = f" (records {self.expected_seq}-{seq - 1})" if seq - 1 > self.expected_seq else ""
            self._add("missing", self.expected_seq,
                      f"record {self.expected_seq} is missing{upto}: deleted from the middle of the chain")
            linked = False
        elif seq < self.expected_seq:
            self._add("order", seq, f"record {seq} is out of order")
            return
        if linked and record.get("prev_hash") != self.prev_hash:
            self._add("link", seq, f"record {seq} does not follow record {seq - 1}")
        if record_hash(record) != record.get("hash"):
            self._add("altered", seq, f"record {seq} was altered")
        self._check_signature(record)
        self._remember(seq, str(record.get("hash")))
        self.prev_hash, self.expected_seq, self.count = str(record.get("hash")), seq + 1, self.count + 1

    def _check_signature(self, record: dict[str, Any]) -> None:
        if not self._signed_seen and record.get("signer") is None and record.get("signature") is None:
            self.unsigned_legacy += 1  # written before records were signed: bound by the first signed one
            return
        self._signed_seen = True
        problem = self._keys.problem_with(record)
        if problem is None:
            self.signers[record["signer"]] += 1
        else:
            self._add("signature", record["seq"], problem)

    def finish(self) -> None:
        if self.count and not self._signed_seen:
            self._add("unsigned", 1, f"no record is signed: nothing authenticates records 1-{self.end} "
                      "(a chain from before signing is sealed by the next signed append)")

    def _remember(self, seq: int, digest: str) -> None:
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        raw = raw if len(raw) == _DIGEST else b"\xff" * _DIGEST
        gap = seq - 1 - len(self._hashes) // _DIGEST
        if gap > MAX_REMEMBERED_GAP:
            return
        self._hashes.extend(bytes(_DIGEST * gap) + raw)

    def hash_at(self, seq: int) -> str | None:
        start = (seq - 1) * _DIGEST
        raw = bytes(self._hashes[start:start + _DIGEST])
        return raw.hex() if len(raw) == _DIGEST and any(raw) else None

    def contains(self, digest: str) -> bool:
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return False
        view = memoryview(self._hashes)
        return len(raw) == _DIGEST and any(view[i:i + _DIGEST] == raw for i in range(0, len(view), _DIGEST))

    def problems(self) -> list[_Problem]:
        found = []
        for first, count in self._found.values():
            more = f" (and {count - 1} more)" if count > 1 else ""
            found.append(_Problem(first.seq, first.text + more))
        return sorted(found, key=lambda p: p.seq or 0)


def _heads_problems(found: HeadsFinding, count: int, end: int) -> list[_Problem]:
    problems = []
    if found.missing_files and count:
        problems.append(_Problem(None, f"the heads file {', '.join(found.missing_files)} does not exist: "
                                 "exported heads were removed, or --heads names the wrong file"))
    if found.checked == 0 and count:
        problems.append(_Problem(None, "no exported heads were found: a cut-off tail or a rewritten chain "
                                 "cannot be detected (check --heads)"))
    if found.furthest_beyond is not None:
        problems.append(_Problem(None, (
            f"truncated tail: an exported head names record {found.furthest_beyond.seq} "
            f"({found.furthest_beyond.source}) but the chain ends at record {end}: records were removed "
            "from the end")))
    if found.first_mismatch is not None:
        first = found.first_mismatch
        if found.matched == 0:
            text = (f"full rewrite: none of the {found.checked} exported heads is in the chain (the first "
                    f"differs at record {first.seq}, {first.source}): the chain was replaced")
        else:
            text = (f"rewritten: the exported head of record {first.seq} ({first.source}) is not in the chain "
                    f"({found.mismatched} heads differ): records up to {first.seq} were changed and re-linked")
        problems.append(_Problem(first.seq, text))
    if found.first_unreadable is not None:
        more = f" (and {found.unreadable - 1} more)" if found.unreadable > 1 else ""
        problems.append(_Problem(None, f"{found.first_unreadable.source} {found.first_unreadable.reason}{more}"))
    return problems


def open_audit_log(settings: "Settings", store: Store, *, signer: AuditSigner | None = None,
                   passphrase: str | None = None, check: bool = True,
                   clock: Callable[[], float] = time.time) -> AuditLog:
    """The audit log a service or an operator script appends to: signed, and exporting heads as configured.

    :param signer: who signs (e.g. ``OfficerSigner`` for the acting officer); by default the service
        audit key of ``IDENTITY_KEYS_DIR``, decrypted with ``passphrase`` (default IDENTITY_KEYS_PASSPHRASE).
    :param check: try the heads sink now, so a script refuses before it acts (``check_heads_sink``).
    Raises ``KeyMaterialError`` (no usable audit key) or ``HeadsUnavailable`` (the sink cannot take heads
    now), before anything is appended.
    """
    if signer is None:
        signer = load_service_signer(KeyPaths(settings.keys_dir),
                                     passphrase if passphrase is not None else settings.keys_passphrase)
    audit = AuditLog(store, signer=signer, heads=heads_sink(settings.audit_heads, settings.db_uri), clock=clock)
    if check:
        check_heads_sink(audit)
    return audit


def check_heads_sink(audit: AuditLog) -> None:
    """``HeadsUnavailable`` if the log's heads sink cannot take heads right now."""
    sink = audit.heads
    if sink is None:
        return
    try:
        sink.check()
    except OSError as exc:
        raise HeadsUnavailable(f"the audit heads sink ({sink.describe()}, IDENTITY_AUDIT_HEADS) cannot take "
                               f"heads: {exc}") from exc
