"""Four-eyes: officers' keys, requests, approvals, and the resolve run refusing anything but a fresh approval."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AuditLog
from identity.breach.errors import Refused
from identity.breach.four_eyes import REQUESTS, FourEyes
from identity.breach.officers import OFFICERS, Registry, generate_key, load_public_key, load_signing_key
from identity.breach.resolve import resolve_pseudonyms
from tests.audit_support import signed_log
from tests.breach_support import params, populate, write_list


@pytest.fixture
def registry(store) -> Registry:
    return Registry(store)


@pytest.fixture
def officers(registry: Registry, tmp_path: Path) -> dict[str, Ed25519PrivateKey]:
    keys = {}
    for name in ("anna", "bram"):
        made = generate_key(tmp_path / f"{name}.key", f"{name}-secret")
        registry.enrol(name, load_public_key(made.public_path), by="security-lead")
        keys[name] = load_signing_key(made.private_path, f"{name}-secret")
    return keys


@pytest.fixture
def listing(store, keys_dir: Path, tmp_path: Path) -> Path:
    return write_list(tmp_path / "affected.txt", populate(store, keys_dir).order)


@pytest.fixture
def four_eyes(store, registry: Registry) -> FourEyes:
    return FourEyes(store, registry)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_request(four_eyes: FourEyes, officers, listing: Path, **overrides) -> dict:
    values = dict(officer="anna", key=officers["anna"], incident="INC-2026-01",
                  reason="tracking data leaked from the analytics bucket", pseudonyms_sha256=sha(listing), entries=12)
    values.update(overrides)
    return four_eyes.file(**values)


def run(store, tmp_path, keys_dir, listing, request_id, **overrides):
    return resolve_pseudonyms(store, signed_log(store), params(tmp_path, keys_dir, listing, request_id=request_id,
                                                             **overrides), four_eyes_required=True)


def test_keygen_writes_a_private_and_a_public_file(tmp_path: Path):
    made = generate_key(tmp_path / "k", "pw")
    assert oct(made.private_path.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in made.private_path.read_bytes()
    assert len(made.fingerprint) == 64
    with pytest.raises(Refused, match="already exists"):
        generate_key(tmp_path / "k", "pw")
    with pytest.raises(Refused, match="wrong passphrase"):
        load_signing_key(made.private_path, "not it")


def test_approved_request_lets_the_run_go_once(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"], pseudonyms_sha256=sha(listing))
    summary = run(store, tmp_path, keys_dir, listing, request["request_id"])
    assert summary.counts["resolved"] == 11
    assert store.get(REQUESTS, request["request_id"])["status"] == "used"
    with pytest.raises(Refused, match="already used"):
        run(store, tmp_path, keys_dir, listing, request["request_id"], out=tmp_path / "again.csv")


def test_a_resumed_run_may_reuse_its_own_request(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"])
    run(store, tmp_path, keys_dir, listing, request["request_id"])
    assert run(store, tmp_path, keys_dir, listing, request["request_id"]).resumed


def test_required_request_is_refused_when_absent(store, listing, tmp_path, keys_dir):
    with pytest.raises(Refused, match="second officer's approval is required"):
        run(store, tmp_path, keys_dir, listing, None)
    assert not (tmp_path / "contacts.csv").exists()
    assert [r["outcome"] for r in AuditLog(store).records()] == ["refused"]


def test_unapproved_request_is_refused(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="not approved"):
        run(store, tmp_path, keys_dir, listing, request["request_id"])


def test_nobody_approves_their_own_request(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="own request"):
        four_eyes.approve(request["request_id"], officer="anna", key=officers["anna"])


def test_one_key_cannot_be_enrolled_under_a_second_name(registry, officers, tmp_path):
    with pytest.raises(Refused, match="already enrolled"):
        registry.enrol("anna-alt", load_public_key(tmp_path / "anna.key.pub"), by="anna")


def test_an_approval_signed_with_someone_elses_key_is_refused(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="signature of bram does not match"):
        four_eyes.approve(request["request_id"], officer="bram", key=officers["anna"])


def test_a_request_signed_with_an_unregistered_key_is_refused(four_eyes, officers, listing):
    with pytest.raises(Refused, match="signature of anna does not match"):
        file_request(four_eyes, officers, listing, key=Ed25519PrivateKey.generate())


def test_approval_checks_the_list_the_approver_holds(four_eyes, officers, listing):
    request = file_request(four_eyes, officers, listing)
    with pytest.raises(Refused, match="not the one"):
        four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"], pseudonyms_sha256="0" * 64)


@pytest.mark.parametrize("field, value", [("reason", "curiosity"), ("incident", "INC-OTHER"),
                                          ("pseudonyms_sha256", "f" * 64), ("requested_by", "bram"),
                                          ("approved_by", "anna")])
def test_a_request_altered_in_the_store_is_refused(store, four_eyes, officers, listing, tmp_path, keys_dir,
                                                   field, value):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"])
    store.update(REQUESTS, {"request_id": request["request_id"]}, {field: value})
    with pytest.raises(Refused, match="altered"):
        run(store, tmp_path, keys_dir, listing, request["request_id"])
    assert not (tmp_path / "contacts.csv").exists()


@pytest.mark.parametrize("field, value, match", [("reason", "another reason", "reason differs"),
                                                 ("incident", "INC-OTHER", "is for incident")])
def test_the_run_must_match_the_approved_request(store, four_eyes, officers, listing, tmp_path, keys_dir,
                                                 field, value, match):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"])
    with pytest.raises(Refused, match=match):
        run(store, tmp_path, keys_dir, listing, request["request_id"], **{field: value})


def test_the_run_must_use_the_approved_list(store, four_eyes, officers, listing, tmp_path, keys_dir):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"])
    longer = write_list(tmp_path / "longer.txt", listing.read_text().split() + ["a" * 26])
    with pytest.raises(Refused, match="pseudonym list is not the one"):
        run(store, tmp_path, keys_dir, longer, request["request_id"])


def test_a_revoked_officers_approval_no_longer_counts(store, registry, four_eyes, officers, listing, tmp_path,
                                                      keys_dir):
    request = file_request(four_eyes, officers, listing)
    four_eyes.approve(request["request_id"], officer="bram", key=officers["bram"])
    registry.revoke("bram")
    assert store.get(OFFICERS, "bram")["status"] == "revoked"
    with pytest.raises(Refused, match="bram is not an active enrolled officer"):
        run(store, tmp_path, keys_dir, listing, request["request_id"])


def test_an_unknown_request_is_refused(store, listing, tmp_path, keys_dir):
    with pytest.raises(Refused, match="no four-eyes request"):
        run(store, tmp_path, keys_dir, listing, "req-nope")
