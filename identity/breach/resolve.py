"""The breach run: a list of affected pseudonyms → ``pseudonym,email`` CSV, under audit.

A list may also name pairwise subjects (``list_formats``): of one sector (``ResolveParams.sector``)
or each with its sector (a ``sector`` column); the CSV then reads ``subject,sector,email``, a
subject of another sector resolves to nothing (``unknown``), and the audit records name the sector
(per-sector counts for mixed lists). A person named twice in a mixed list, in two sectors, is
resolved once (the second line is a ``duplicate``).

Order of events, each a guarantee:

1. Refusals first, touching nothing: missing incident/operator/reason, a DPO key that does not
   load (too few shares, a wrong passphrase) or is not the vault's, an unreadable list, an output
   that exists without a resumable state, a missing/unapproved/altered/used four-eyes request.
   Every refusal is audited.
2. The four-eyes request (if any) is used: bound to this run by a ``four_eyes.use`` audit record
   (a resumed run must be the one that record names); then the ``breach.resolve``/``started``
   audit record is written — before any e-mail is opened. The state file is never trusted
   alone: a run the audit log records as completed opens nothing again, whatever its state says.
3. The list is streamed in chunks: one batched store read per chunk, sealed e-mails opened by a
   worker pool, rows written in input order, a checkpoint every couple of seconds. An e-mail is
   written only for the pseudonym it was sealed for (``check_opened``): a value sealed for another
   (moved or copied in the store) is ``misbound``, never written; a value from before sealing
   bound the pseudonym (``sb1.``) is written and counted ``unbound`` (nothing to check it against).
4. ``completed`` (or ``interrupted``/``failed``) is audited with the counts.

``resolve_pseudonyms`` is the whole run as a function (the script and benchmarks call it);
``count_pseudonyms`` produces the same counts without any key (for the Art. 33 notice).
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence, TextIO

from ..audit import AuditLog
from ..sealing import Unsealed
from ..store import Store, StoreError
from ..vault import InvalidEmail, normalise_email
from . import audit_trail
from .dedupe import RepeatCursor, find_repeats
from ..keys.dpo_shares import PassphraseFor
from .dpo_key import DpoKey, load_dpo_private_key, raw_private
from .errors import BreachError, Refused
from .four_eyes import FourEyes
from .inputs import Entry, count_lines
from .list_formats import MIXED, ListFormat, detect, list_digest
from .lookup import Lookup, SectorLookup
from .opening import OpeningPool, default_workers
from .output import CsvFile, Layout, state_path, unresolved_path
from .progress import ProgressBar
from .registry import Registry
from .state import Progress, RunState, StateError

ACTION = "breach.resolve"
COUNT_ACTION = "breach.count"
CHECKPOINT_SECONDS = 2.0
DEFAULT_CHUNK = 1000
MALFORMED_SHOWN = 10
SUMMARY_KEYS = ("resolved", "unknown", "erased", "malformed")
COUNT_KEYS = SUMMARY_KEYS + ("duplicate", "unopenable", "restricted", "misbound", "unbound")


@dataclass(frozen=True)
class ResolveParams:
    """Everything one run needs. ``out=None`` writes the CSV to ``stdout`` (no resume).

    ``dpo_key``: the share files (one per holder present), or one whole key of a vault not yet
    re-sealed; ``passphrase`` unlocks every one of them (development, tests), else
    ``passphrase_for`` asks each share's holder.
    """

    incident: str | None
    operator: str | None
    reason: str | None
    pseudonyms: Path
    dpo_key: Path | Sequence[Path]
    dpo_public: Path
    sector: str | None = None  # the list holds pairwise subjects of this sector (``--sector``)
    passphrase: str | None = field(default=None, repr=False)
    passphrase_for: PassphraseFor | None = field(default=None, repr=False)
    out: Path | None = None
    request_id: str | None = None
    workers: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    progress: bool | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    """The counts of one run (``line()`` is the summary line the script ends with)."""

    counts: Counter = field(default_factory=Counter)
    run_id: str = ""
    resumed: bool = False
    pseudonyms_sha256: str = ""
    malformed_lines: list[int] = field(default_factory=list)
    out: Path | None = None

    def line(self) -> str:
        """``resolved=N unknown=N erased=N malformed=N``, then `` misbound=N`` when any value was misbound."""
        line = " ".join(f"{key}={self.counts.get(key, 0)}" for key in SUMMARY_KEYS)
        misbound = self.counts.get(MISBOUND, 0)
        return f"{line} {MISBOUND}={misbound}" if misbound else line

    def as_dict(self) -> dict[str, int]:
        return {key: int(self.counts.get(key, 0)) for key in COUNT_KEYS}

    def by_sector(self) -> dict[str, dict[str, int]]:
        """A mixed list's counts per sector (counted as ``KIND@SECTOR``; "" is the vault's pseudonyms)."""
        found: dict[str, dict[str, int]] = {}
        for key, value in self.counts.items():
            kind, at, sector = key.partition("@")
            if at and value:
                found.setdefault(sector, {})[kind] = int(value)
        return found


# -- refusals ----------------------------------------------------------------------------------


def _require(params: ResolveParams) -> None:
    missing = [flag for flag, value in (("--incident", params.incident), ("--operator", params.operator),
                                        ("--reason", params.reason)) if not (value and value.strip())]
    if missing:
        raise Refused(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")


def _list_hash(path: Path, sector: str | None = None) -> str:
    try:
        return list_digest(path, sector)
    except OSError as exc:
        raise Refused(f"cannot read the pseudonym list {path}: {exc.strerror}") from exc


def _list_details(fmt: ListFormat) -> dict[str, Any]:
    """What the audit records say about the list's form (the sector of a one-sector list)."""
    if not fmt.pairwise:
        return {}
    return {"sector": fmt.sector} if fmt.kind != MIXED else {"sectors": "a sector column"}


def _lookup(store: Store, fmt: ListFormat) -> Lookup:
    return SectorLookup(store, sector=fmt.sector) if fmt.pairwise else Lookup(store)


def _audit_refusal(audit: AuditLog, params: Any, problem: str, action: str = ACTION) -> None:
    audit.append(actor=(params.operator or "").strip() or "(unnamed)", action=action, outcome="refused",
                 reason=params.reason or None, incident=params.incident or None, details={"problem": problem})


# -- one chunk of work -------------------------------------------------------------------------

OPEN, DUPLICATE, MALFORMED, ERASED, UNKNOWN = "open", "duplicate", "malformed", "erased", "unknown"
BOUND, UNBOUND, MISBOUND, UNOPENABLE = "bound", "unbound", "misbound", "unopenable"  # what opening gave


@dataclass
class Job:
    """A chunk of consecutive input lines, what became of each, and the sealed values to open.

    ``owners``: beside each sealed value, the vault pseudonym of the row it was read from (the line's
    pseudonym, or the person behind a pairwise subject): the only one it may be delivered for.
    ``people``: for a mixed list, the vault pseudonym behind each line to open (one person may be
    named in several sectors, and is resolved once).
    """

    last_line: int
    items: list[tuple[int, str, str, bool]]  # (line, identifier, kind, restricted)
    sealed: list[str]
    owners: list[str] = field(default_factory=list)
    people: dict[int, str] = field(default_factory=dict)


def _chunks(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    while chunk := list(islice(entries, size)):
        yield chunk


def _plan(look_up: Lookup, repeats: RepeatCursor, chunk: list[Entry], *, people: bool = False) -> Job:
    """Classify a chunk's lines (one store read; two for pairwise subjects) and collect the sealed
    values to open, in order. ``people``: note the person behind each line (mixed lists)."""
    repeated = repeats.through(chunk[-1][0])
    answers = look_up([p for line, p in chunk if p is not None and line not in repeated])
    sealed_of, erased, restricted, person = answers.sealed, answers.erased, answers.restricted, answers.person
    items: list[tuple[int, str, str, bool]] = []
    sealed: list[str] = []
    owners: list[str] = []
    for line, pseudonym in chunk:
        if pseudonym is None:
            items.append((line, "", MALFORMED, False))
        elif line in repeated:
            items.append((line, pseudonym, DUPLICATE, False))
        elif pseudonym in sealed_of:
            items.append((line, pseudonym, OPEN, pseudonym in restricted))
            sealed.append(sealed_of[pseudonym])
            owners.append(person.get(pseudonym, pseudonym))  # a pairwise subject's person; else the pseudonym
        else:
            items.append((line, pseudonym, ERASED if pseudonym in erased else UNKNOWN, False))
    job = Job(chunk[-1][0], items, sealed, owners)
    if people:
        job.people = {line: person[key] for line, key, kind, _ in items if kind == OPEN}
    return job


def _repeats(state: RunState, path: Path, fmt: ListFormat, *, start_after: int = 0) -> RepeatCursor:
    """The list's repeated lines: found once per run (before anything is opened), then merged."""
    if not state.repeats_ready:
        find_repeats(path, state.add_repeats, workdir=state.path.parent, entries=fmt.entries)
        state.mark_repeats_ready()
    return RepeatCursor(state.repeats_after, start_after=start_after)


FORMULA_STARTS = ("=", "+", "-", "@")  # what a spreadsheet takes for a formula at the start of a cell


def deliverable(opened: str | None) -> str | None:
    """The opened value if it is an address as the vault seals them (normalised) that no spreadsheet reads as a
    formula, else None (reported ``unopenable``).

    The sealed values are written by anyone who can write the store and holds the DPO's public key: a value
    that is not such an address was not sealed by the vault, and a formula in the contacts file could send
    every address in it elsewhere when the file is opened in a spreadsheet.
    """
    if opened is None or opened.startswith(FORMULA_STARTS):
        return None
    try:
        return opened if normalise_email(opened) == opened else None
    except InvalidEmail:
        return None


def check_opened(opened: Unsealed | None, owner: str) -> tuple[str, str | None]:
    """What an opened value gives the person ``owner`` (the vault pseudonym of the row it was read from).

    ``(BOUND, e-mail)``: sealed for ``owner`` (sb2); ``(UNBOUND, e-mail)``: an sb1 value, which names no
    pseudonym to check; ``(MISBOUND, None)``: sealed for another pseudonym, i.e. moved or copied into this
    row in the store; ``(UNOPENABLE, None)``: it did not open, or holds no deliverable address.
    """
    if opened is None:
        return UNOPENABLE, None
    sealed_for, value = opened
    if sealed_for is not None and sealed_for != owner:
        return MISBOUND, None
    email = deliverable(value)
    if email is None:
        return UNOPENABLE, None
    return (UNBOUND if sealed_for is None else BOUND), email


class _Writer:
    """Writes finished jobs in order and checkpoints; counts only what was written."""

    def __init__(self, state: RunState, resolved: CsvFile, unresolved: CsvFile, summary: Summary,
                 clock: Callable[[], float] = time.monotonic, layout: Layout | None = None) -> None:
        self.state, self.resolved, self.unresolved, self.summary = state, resolved, unresolved, summary
        self.layout = layout or Layout()
        self.lines_done = 0
        self._clock = clock
        self._checkpointed_at = clock()

    def write(self, job: Job, values: list[Unsealed | None]) -> None:
        counts = self.summary.counts
        found: list[tuple[str, str]] = []
        missing: list[tuple[int, str, str]] = []
        opened, owners = iter(values), iter(job.owners)
        failed: Counter = Counter()  # UNOPENABLE, MISBOUND
        restricted_count = unbound = 0
        people, per_sector = job.people, self.layout.sector_of if self.layout.mixed else None
        for line, pseudonym, kind, restricted in job.items:
            if kind == OPEN:
                binding, email = check_opened(next(opened), next(owners))
                if email is None:
                    missing.append((line, pseudonym, binding))
                    failed[binding] += 1
                    continue
                if not people or self.state.first_sighting(people[line]):
                    found.append((pseudonym, email))
                    restricted_count += restricted
                    unbound += binding == UNBOUND
                    if per_sector:
                        counts[f"resolved@{per_sector(pseudonym)}"] += 1
                    continue
                kind = DUPLICATE  # the same person on an earlier line, in another sector
            missing.append((line, pseudonym, kind))
            counts[kind] += 1
            if per_sector and kind != MALFORMED:
                counts[f"{kind}@{per_sector(pseudonym)}"] += 1
            if kind == MALFORMED and len(self.summary.malformed_lines) < MALFORMED_SHOWN:
                self.summary.malformed_lines.append(line)
        for key, value in (("resolved", len(found)), (UNOPENABLE, failed[UNOPENABLE]), (MISBOUND, failed[MISBOUND]),
                           ("restricted", restricted_count), (UNBOUND, unbound)):
            if value:
                counts[key] += value
        self.resolved.write(self.layout.resolved(found))
        self.unresolved.write(self.layout.unresolved(missing))
        self.lines_done = job.last_line
        if self._clock() - self._checkpointed_at >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self, *, complete: bool = False) -> None:
        self.resolved.sync()
        self.unresolved.sync()
        self.state.checkpoint(Progress(self.lines_done, self.resolved.position, self.unresolved.position,
                                       dict(self.summary.counts), complete))
        self._checkpointed_at = self._clock()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class _Prepared:
    sha: str
    run_id: str
    resumed: bool
    state: RunState | None = None
    fmt: ListFormat = field(default_factory=ListFormat)

    @property
    def layout(self) -> Layout:
        return Layout(pairwise=self.fmt.pairwise, sector=self.fmt.sector)


class _TextSink:
    """Lets ``CsvFile`` write bytes to a text stream (standard error in stdout mode)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        return self._stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self._stream.flush()


def _load_resumable(params: ResolveParams, sha: str) -> RunState | None:
    """The state of an interrupted run of exactly these parameters, or None for a new run."""
    if params.out is None:
        return None
    spath, out = state_path(params.out), params.out
    if not spath.exists():
        if out.exists() or unresolved_path(out).exists():
            raise Refused(f"{out} already exists; refusing to overwrite it")
        return None
    if not out.exists():
        raise Refused(f"{spath} is left from a run whose output {out} is gone; remove it to start over")
    try:
        state = RunState.load(spath)
        identity = state.identity
    except StateError as exc:
        raise Refused(str(exc)) from exc
    mismatch = [name for name, value in (("incident", params.incident), ("pseudonyms_sha256", sha),
                                         ("request_id", params.request_id)) if identity[name] != value]
    if mismatch:
        state.close()
        raise Refused(f"{out} belongs to a run with another {', '.join(mismatch)}; choose another --out")
    return state


def _load_key(params: ResolveParams) -> DpoKey:
    _require(params)
    return load_dpo_private_key(params.dpo_key, passphrase=params.passphrase, passphrase_for=params.passphrase_for,
                                public_key_path=params.dpo_public)


def _refuse_reopening(store: Store, params: ResolveParams, state: RunState) -> None:
    """A run the audit log records as completed is finished: an edited state file does not re-open it."""
    run_id = state.identity["run_id"]
    completed = [r for r in audit_trail.records(store, ACTION, outcome="completed", incident=params.incident)
                 if audit_trail.detail(r, "run_id") == run_id]
    if completed and not state.progress.complete:
        raise Refused(f"run {run_id} completed (audit record {completed[0]['seq']}) but its state file says "
                      "otherwise: the state file was altered; nothing is opened again")


def _prepare(store: Store, audit: AuditLog, params: ResolveParams, four_eyes_required: bool,
             clock: Callable[[], float]) -> _Prepared:
    fmt = detect(params.pseudonyms, params.sector)
    sha = _list_hash(params.pseudonyms, fmt.sector)
    state = _load_resumable(params, sha)
    try:
        run_id = state.identity["run_id"] if state else "run-" + secrets.token_hex(8)
        if state:
            _refuse_reopening(store, params, state)
        if params.request_id:
            four_eyes = FourEyes(store, Registry(store, audit, clock=clock), audit, clock=clock)
            request = four_eyes.check(params.request_id, incident=params.incident or "", reason=params.reason or "",
                                      pseudonyms_sha256=sha)
            if state:
                four_eyes.bound(request, run_id=run_id)
            else:
                four_eyes.use(request, operator=params.operator or "", run_id=run_id)
        elif four_eyes_required:
            raise Refused("a second officer's approval is required (IDENTITY_FOUR_EYES_REQUIRED): file a "
                          "request with scripts/four_eyes.py and pass --request ID")
    except BaseException:
        if state:
            state.close()
        raise
    return _Prepared(sha, run_id, state is not None, state, fmt)


def _open_outputs(params: ResolveParams, prepared: _Prepared, stdout: BinaryIO,
                  stderr: TextIO) -> tuple[RunState, CsvFile, CsvFile, Progress]:
    identity = {"run_id": prepared.run_id, "incident": params.incident, "pseudonyms_sha256": prepared.sha,
                "request_id": params.request_id}
    layout = prepared.layout
    if params.out is None:
        state = RunState.temporary(identity)
        return (state, CsvFile.stream(stdout, layout.resolved_header),
                CsvFile.stream(_TextSink(stderr), layout.unresolved_header),  # type: ignore[arg-type]  # writes bytes
                Progress())
    if prepared.state is not None:
        state = prepared.state
        progress = state.rewind()
        return (state, CsvFile.reopen(params.out, progress.out_bytes),
                CsvFile.reopen(unresolved_path(params.out), progress.unresolved_bytes), progress)
    resolved = CsvFile.create(params.out, layout.resolved_header)
    unresolved = CsvFile.create(unresolved_path(params.out), layout.unresolved_header)
    state = RunState.create(state_path(params.out), identity)
    state.checkpoint(Progress(0, resolved.position, unresolved.position, {}, False))
    return state, resolved, unresolved, Progress(0, resolved.position, unresolved.position)


def _stream(store: Store, params: ResolveParams, fmt: ListFormat, pool: OpeningPool[Job], writer: _Writer,
            bar: ProgressBar, start_line: int) -> None:
    repeats = _repeats(writer.state, params.pseudonyms, fmt, start_after=start_line)
    with open(params.pseudonyms, "rb") as handle, _lookup(store, fmt) as look_up:
        for chunk in _chunks(fmt.entries(handle, skip_through=start_line), params.chunk_size):
            job = _plan(look_up, repeats, chunk, people=fmt.kind == MIXED)
            for done, opened in pool.submit(job, job.sealed):
                writer.write(done, opened)
                bar.update(writer.lines_done)
        for done, opened in pool.finish():
            writer.write(done, opened)
    writer.checkpoint(complete=True)
    bar.update(writer.lines_done, force=True)


def resolve_pseudonyms(store: Store, audit: AuditLog, params: ResolveParams, *, four_eyes_required: bool = False,
                       stdout: BinaryIO | None = None, stderr: TextIO | None = None,
                       clock: Callable[[], float] = time.time) -> Summary:
    """Run (or resume) one breach resolution; see the module docstring for its guarantees.

    :raises Refused: nothing was opened; the refusal is in the audit log.
    :raises BreachError: the run stopped part-way; running it again resumes.
    """
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr
    try:
        key = _load_key(params)
    except Refused as exc:
        _audit_refusal(audit, params, str(exc))
        raise
    workers = default_workers() if params.workers is None else params.workers
    with OpeningPool[Job](raw_private(key.private_key), workers=workers) as pool:  # forked before the store is touched
        return _run(store, audit, params, pool, four_eyes_required, stdout, stderr, clock, key.source)


def _run(store: Store, audit: AuditLog, params: ResolveParams, pool: OpeningPool[Job], four_eyes_required: bool,
         stdout: BinaryIO, stderr: TextIO, clock: Callable[[], float], key_source: dict[str, Any]) -> Summary:
    try:
        prepared = _prepare(store, audit, params, four_eyes_required, clock)
    except Refused as exc:
        _audit_refusal(audit, params, str(exc))
        raise
    summary = Summary(run_id=prepared.run_id, resumed=prepared.resumed, pseudonyms_sha256=prepared.sha,
                      out=params.out)
    details = {"run_id": prepared.run_id, "pseudonyms_sha256": prepared.sha, "request_id": params.request_id,
               "resumed": prepared.resumed, "output": "file" if params.out else "stdout", "dpo_key": key_source,
               **_list_details(prepared.fmt), **params.notes}
    try:
        audit.append(actor=params.operator or "", action=ACTION, outcome="started", reason=params.reason,
                     incident=params.incident, details=details)
        state, resolved, unresolved, progress = _open_outputs(params, prepared, stdout, stderr)
    except BaseException as exc:
        if prepared.state is not None:
            prepared.state.close()
        if isinstance(exc, Refused):
            _audit_refusal(audit, params, str(exc))
        raise
    summary.counts.update(progress.counts)
    writer = _Writer(state, resolved, unresolved, summary, layout=prepared.layout)
    writer.lines_done = progress.lines_done
    total = count_lines(params.pseudonyms) if (bar_on := _bar_enabled(params, stderr)) else None
    bar = ProgressBar(total, stream=stderr, enabled=bar_on, start_at=progress.lines_done)
    outcome = "completed"
    failure: BaseException | None = None
    try:
        if not progress.complete:
            _stream(store, params, prepared.fmt, pool, writer, bar, progress.lines_done)
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    except (StoreError, OSError, StateError) as exc:
        outcome, failure = "failed", exc
        raise BreachError(f"the run stopped: {type(exc).__name__}: {exc}; run it again to resume") from exc
    except Exception as exc:  # anything unforeseen: the run did not complete, whatever it wrote
        outcome, failure = "failed", exc
        raise
    finally:
        bar.close()
        resolved.close()
        unresolved.close()
        state.close()
        _audit_end(audit, params, details, summary, outcome, failure, stderr)
    return summary


def _bar_enabled(params: ResolveParams, stderr: TextIO) -> bool:
    return stderr.isatty() if params.progress is None else params.progress


def _audit_end(audit: AuditLog, params: ResolveParams, details: dict[str, Any], summary: Summary, outcome: str,
               failure: BaseException | None, stderr: TextIO) -> None:
    extra: dict[str, Any] = {"problem": type(failure).__name__} if failure else {}
    if "sector" in details:
        extra["sector"] = details["sector"]
    if summary.by_sector():
        extra["sectors"] = summary.by_sector()  # a mixed list: what became of each sector's lines
    try:
        audit.append(actor=params.operator or "", action=ACTION, outcome=outcome, reason=params.reason,
                     incident=params.incident, counts=summary.as_dict(),
                     details={"run_id": details["run_id"], "pseudonyms_sha256": details["pseudonyms_sha256"], **extra})
    except StoreError as exc:
        print(f"warning: could not write the '{outcome}' audit record: {exc}", file=stderr)


# -- counts only (Art. 33 notice) --------------------------------------------------------------


@dataclass(frozen=True)
class CountParams:
    incident: str | None
    operator: str | None
    reason: str | None
    pseudonyms: Path
    chunk_size: int = DEFAULT_CHUNK
    sector: str | None = None  # the list holds pairwise subjects of this sector


def count_pseudonyms(store: Store, audit: AuditLog, params: CountParams) -> Summary:
    """How many listed pseudonyms the vault could resolve, has erased, does not know, or cannot read.

    Needs no key and opens nothing: the numbers the supervisory authority's notice asks for.
    """
    try:
        _require(params)  # type: ignore[arg-type]
        fmt = detect(params.pseudonyms, params.sector)
        sha = _list_hash(params.pseudonyms, fmt.sector)
    except Refused as exc:
        _audit_refusal(audit, params, str(exc), COUNT_ACTION)
        raise
    summary = Summary(pseudonyms_sha256=sha)
    state = RunState.temporary({"run_id": "count", "incident": params.incident, "pseudonyms_sha256": sha})
    layout, mixed = Layout(pairwise=fmt.pairwise, sector=fmt.sector), fmt.kind == MIXED
    try:
        repeats = _repeats(state, params.pseudonyms, fmt)
        with open(params.pseudonyms, "rb") as handle, _lookup(store, fmt) as look_up:
            for chunk in _chunks(fmt.entries(handle), params.chunk_size):
                job = _plan(look_up, repeats, chunk, people=mixed)
                for line, key, kind, restricted in job.items:
                    if kind == OPEN and job.people and not state.first_sighting(job.people[line]):
                        kind, restricted = DUPLICATE, False
                    counted = "resolved" if kind == OPEN else kind
                    summary.counts[counted] += 1
                    summary.counts["restricted"] += restricted
                    if mixed and kind != MALFORMED:
                        summary.counts[f"{counted}@{layout.sector_of(key)}"] += 1
    finally:
        state.close()
    audit.append(actor=params.operator or "", action=COUNT_ACTION, reason=params.reason, incident=params.incident,
                 counts=summary.as_dict(), details={"pseudonyms_sha256": sha, **_list_details(fmt),
                                                    **({"sectors": summary.by_sector()} if mixed else {})})
    return summary


__all__ = ["CountParams", "ResolveParams", "Summary", "count_pseudonyms", "resolve_pseudonyms"]
