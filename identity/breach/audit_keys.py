"""Officers' keys for the audit log: the lookup ``scripts/audit.py verify`` trusts, and the officer's signer.

The one place that joins the officer registry to audit signatures (``identity.audit_signing``), so a
change to how the registry authenticates its keys is made here only.
"""

from __future__ import annotations

from pathlib import Path

from ..audit import AuditLog
from ..audit_signing import OfficerKeyLookup, OfficerSigner, load_officer_signer, raw_public
from ..keys.files import KeyMaterialError
from ..store import Store
from .errors import Refused
from .officers import check_name
from .registry import Registry


def registered_officer_key(store: Store) -> OfficerKeyLookup:
    """An officer's public key by name, only with a chain that verifies back to the founding ceremony.

    Revoked officers' keys are returned too (their earlier signatures stand); unknown, never confirmed or
    forged entries give None.
    """
    return Registry(store, AuditLog(store)).verified_key


def officer_audit_signer(store: Store, officer: str, key_path: Path, passphrase: str | None) -> OfficerSigner:
    """The acting officer's audit signer; ``Refused`` unless the key is the one enrolled for ``officer``.

    Checked before anything is signed: records signed with a key ``verify`` does not trust would make
    an honest run look like tampering.
    """
    check_name(officer)
    try:
        signer = load_officer_signer(officer, key_path, passphrase)
    except KeyMaterialError as exc:
        raise Refused(f"cannot use the officer key: {exc}") from exc
    enrolled = registered_officer_key(store)(officer)
    if enrolled is None or raw_public(enrolled) != raw_public(signer.private_key.public_key()):
        raise Refused(f"{key_path} is not the enrolled key of officer {officer}")
    return signer
