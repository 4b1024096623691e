"""Moving a vault from a whole DPO key to a shared one: every sealed e-mail re-sealed to the new key set.

Splitting the old key into shares would change nothing: the DPO (and any backup) still holds it
whole. So the DPO makes a new key set offline (``scripts/keys.py dpo-create``; its private key is
never written whole), the service seals new logins to its public key, and this pass opens each
sealed e-mail with the old key and seals it to the new public key (``scripts/keys.py dpo-reseal``).
The same pass retires a key *set* (a share lost or stolen, a holder leaving): the old set's shares
instead of a whole key.
Each record is replaced only if it still holds the value that was opened (a conditional update),
so an erasure or rectification meanwhile wins. When a pass has walked the whole vault, nothing in
the database opens with the old key any more, and the old key can be destroyed.

Every value written is bound (``sb2.``, ``Sealer.seal_email``). An unbound ``sb1.`` value is bound to
the row it is in (counted ``upgraded``): nothing can tell whether it was moved there before, so the
upgrade trusts the row as it stands. An sb2 value keeps the pseudonym it was sealed for, even one
that is not its row's (counted ``misbound``: moved or copied in the store): re-sealing changes which
key opens a value, never whom it names, so breach runs keep reporting it.

Resumable: the pass walks the vault in pseudonym order and checkpoints the last pseudonym done and
the counts in a state file (mode 0600, no addresses) after each batch; run again after a kill or a
lost connection, it continues from there. Records re-sealed after the last checkpoint are met again
and no longer open with the old key: they count as ``not_old_key``. A completed pass run again starts
a new one, which should re-seal nothing: the proof that the old key has become useless.

Audited (``keys.dpo_reseal``: ``refused``, ``started``, then ``completed``/``interrupted``/``failed``
with the counts and, in ``details.binding``, ``upgraded`` and ``misbound``) before anything is opened.
No address is written anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..audit import AuditLog
from ..keys.dpo_shares import PassphraseFor, fingerprint, looks_like_share_file, unlock
from ..keys.files import KeyMaterialError, load_dpo_public_key, load_private_key
from ..sealing import Sealer, Unsealed
from ..store import Gt, Order, Store, StoreError
from ..vault import IDENTITIES
from .dpo_key import raw_private
from .errors import BreachError, Refused
from .opening import OpeningPool, default_workers

ACTION = "keys.dpo_reseal"
STATE_FORMAT = "identity-dpo-reseal/1"
DEFAULT_BATCH = 1000
COUNT_KEYS = ("resealed", "not_old_key", "changed", "erased")
BINDING_KEYS = ("upgraded", "misbound")  # of the records re-sealed: sb1 now bound to their row; sb2 bound elsewhere


@dataclass(frozen=True)
class ResealParams:
    """One pass: the old key (one whole key, or the old set's share files), the vault's new public key
    (the new key set's), the state file. Passphrases as for a breach run (``ResolveParams``)."""

    operator: str
    old_key: Path | Sequence[Path]
    new_public: Path
    state: Path
    passphrase: str | None = field(default=None, repr=False)
    passphrase_for: PassphraseFor | None = field(default=None, repr=False)
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH


@dataclass
class ResealReport:
    counts: Counter = field(default_factory=Counter)
    resumed: bool = False
    passes: int = 1
    old_key: str = ""
    new_key: str = ""

    def as_dict(self) -> dict[str, int]:
        return {key: int(self.counts.get(key, 0)) for key in COUNT_KEYS}

    def binding(self) -> dict[str, int]:
        """Of the records re-sealed: ``upgraded`` (sb1, now bound to their row), ``misbound`` (bound to another)."""
        return {key: int(self.counts.get(key, 0)) for key in BINDING_KEYS}


@dataclass
class _State:
    """The pass's progress on disk: replaced atomically after each batch."""

    path: Path
    old_key: str
    new_key: str
    cursor: str | None = None
    counts: Counter = field(default_factory=Counter)
    complete: bool = False
    passes: int = 1

    @classmethod
    def load(cls, path: Path, old_key: str, new_key: str) -> tuple[_State, bool]:
        """The state of this migration (a new one if there is none); ``Refused`` if it is another's."""
        try:
            doc = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return cls(path, old_key, new_key), False
        except (OSError, ValueError) as exc:
            raise Refused(f"cannot read the state file {path}: remove it to start over") from exc
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise Refused(f"{path} is not a dpo-reseal state file")
        if (doc.get("old_key_sha256"), doc.get("new_key_sha256")) != (old_key, new_key):
            raise Refused(f"{path} belongs to a migration between other keys: choose another --state")
        state = cls(path, old_key, new_key, doc.get("cursor"), Counter(doc.get("counts") or {}),
                    bool(doc.get("complete")), int(doc.get("passes") or 1))
        if state.complete:  # a finished pass run again: a new pass over everything (it should re-seal nothing)
            state.cursor, state.counts, state.complete, state.passes = None, Counter(), False, state.passes + 1
            return state, False
        return state, True

    def save(self) -> None:
        doc = {"format": STATE_FORMAT, "old_key_sha256": self.old_key, "new_key_sha256": self.new_key,
               "cursor": self.cursor, "counts": dict(self.counts), "complete": self.complete, "passes": self.passes}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _old_key(params: ResealParams) -> tuple[Any, str]:
    """The old private key and what it was made of (a whole key, or the shares of a retired key set)."""
    paths = [Path(params.old_key)] if isinstance(params.old_key, (str, Path)) else [Path(p) for p in params.old_key]
    if paths and all(looks_like_share_file(p) for p in paths):
        ask = (lambda _share: params.passphrase) if params.passphrase else (params.passphrase_for or (lambda _s: None))
        return unlock(paths, None, ask).private_key, "shares"
    if len(paths) != 1:
        raise KeyMaterialError("--old-key: give the old key set's share files, or one whole key alone")
    return load_private_key(paths[0], params.passphrase), "whole key"


def _keys(params: ResealParams) -> tuple[X25519PrivateKey, Sealer, str, str, str]:
    try:
        old, form = _old_key(params)
        new_public = load_dpo_public_key(Path(params.new_public))
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the DPO keys: {exc}") from exc
    if not isinstance(old, X25519PrivateKey):
        raise Refused(f"{params.old_key} is not an X25519 private key (the old DPO key is)")
    old_fp, new_fp = fingerprint(old.public_key()), fingerprint(new_public)
    if old_fp == new_fp:
        raise Refused(f"{params.new_public} is still the old key's public half: make the new key set "
                      "(keys.py dpo-create), install its dpo_public.pem on the service and here, then run this")
    return old, Sealer(new_public), old_fp, new_fp, form


def _batches(store: Store, after: str | None, size: int):
    """The vault's records in pseudonym order after ``after``, ``size`` at a time."""
    while True:
        where = {"pseudonym": Gt(after)} if after is not None else {}
        batch = list(store.find(IDENTITIES, where, order=Order("pseudonym"), limit=size))
        if not batch:
            return
        yield batch
        after = batch[-1]["pseudonym"]


def _write_back(store: Store, sealer: Sealer, batch: list[dict[str, Any]], opened: list[Unsealed | None],
                state: _State) -> None:
    """Seal each opened e-mail to the new key, bound (see the module docstring); replace the record only if it
    still holds what was opened."""
    values = iter(opened)
    for doc in batch:
        old = doc.get("sealed_email")
        if not old:
            state.counts["erased"] += 1
            continue
        value = next(values)
        if value is None:
            state.counts["not_old_key"] += 1
            continue
        row, (sealed_for, email) = doc["pseudonym"], value
        binding = "upgraded" if sealed_for is None else "misbound" if sealed_for != row else None
        replaced = store.update(IDENTITIES, {"pseudonym": row, "sealed_email": old},
                                {"sealed_email": sealer.seal_email(sealed_for or row, email)})
        state.counts["resealed" if replaced else "changed"] += 1
        if replaced and binding:
            state.counts[binding] += 1
    state.cursor = batch[-1]["pseudonym"]
    state.save()


def reseal_vault(store: Store, audit: AuditLog, params: ResealParams) -> ResealReport:
    """Run (or resume) one pass; see the module docstring.

    :raises Refused: nothing was opened; the refusal is in the audit log.
    :raises BreachError: the pass stopped part-way; running it again resumes.
    """
    try:
        old_key, sealer, old_fp, new_fp, form = _keys(params)
        state, resumed = _State.load(Path(params.state), old_fp, new_fp)
    except Refused as exc:
        audit.append(actor=params.operator, action=ACTION, outcome="refused", details={"problem": str(exc)})
        raise
    workers = default_workers() if params.workers is None else params.workers
    report = ResealReport(state.counts, resumed, state.passes, old_fp, new_fp)
    with OpeningPool[list](raw_private(old_key), workers=workers) as pool:  # forked before the store is touched
        audit.append(actor=params.operator, action=ACTION, outcome="started", details={
            "old_key_sha256": old_fp, "old_key": form, "new_key_sha256": new_fp, "resumed": resumed,
            "pass": state.passes})
        outcome, problem = "completed", None
        try:
            for batch in _batches(store, state.cursor, params.batch_size):
                for done, opened in pool.submit(batch, [d["sealed_email"] for d in batch if d.get("sealed_email")]):
                    _write_back(store, sealer, done, opened, state)
            for done, opened in pool.finish():
                _write_back(store, sealer, done, opened, state)
            state.complete = True
            state.save()
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        except (StoreError, OSError) as exc:
            outcome, problem = "failed", type(exc).__name__
            raise BreachError(f"the pass stopped: {type(exc).__name__}: {exc}; run it again to resume") from exc
        except Exception as exc:  # anything unforeseen: the pass did not complete
            outcome, problem = "failed", type(exc).__name__
            raise
        finally:
            details: dict[str, Any] = {"old_key_sha256": old_fp, "new_key_sha256": new_fp, "pass": state.passes,
                                       "binding": report.binding()}
            if problem:
                details["problem"] = problem
            try:
                audit.append(actor=params.operator, action=ACTION, outcome=outcome, counts=report.as_dict(),
                             details=details)
            except StoreError:
                pass  # the store is what failed; the raised error says so
    return report


__all__ = ["ResealParams", "ResealReport", "reseal_vault"]
