"""``scripts/audit.py`` as an auditor runs it: verify (exit 0 + head; exit 1 with one line per problem), show.

The attacks are made as someone with write access to the database, not to the keys or the heads file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.audit import AUDIT_LOG, AuditLog, record_hash
from identity.audit_heads import FileHeads
from identity.audit_signing import OfficerSigner, ServiceSigner, load_service_signer
from identity.breach.registry import Registry
from identity.keys import KeyPaths
from identity.store import SQLiteStore, Store
from identity.keys.files import private_key_pem
from tests.audit_support import rewrite
from tests.breach_support import Officer, found, populate, write_list
from tests.lookup_support import present

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, env=full_env, input=stdin, stdin=None if stdin else subprocess.DEVNULL,
                          timeout=60)


def heads_of(db: Path) -> Path:
    return Path(str(db) + ".audit-heads.jsonl")


def service_log(db: Path, keys_dir: Path, **kwargs) -> AuditLog:
    """The log as the service writes it: its audit key, its heads file beside the database."""
    return AuditLog(SQLiteStore(db), signer=load_service_signer(KeyPaths(keys_dir), None),
                    heads=FileHeads(heads_of(db)), **kwargs)


@pytest.fixture
def db(tmp_path: Path, keys_dir: Path) -> Path:
    path = tmp_path / "audit.sqlite3"
    log = service_log(path, keys_dir, clock=lambda: 1_700_000_000.0)
    for i in range(1, 6):
        log.append(actor=f"officer{i}", action="breach.resolve", reason=f"reason {i}",
                   incident="INC-7" if i % 2 else "INC-8", counts={"resolved": i})
    return path


@pytest.fixture
def auditor_keys(tmp_path: Path, keys_dir: Path) -> Path:
    """What an auditor holds: the public half of the audit key, nothing private."""
    public = tmp_path / "auditor-keys"
    public.mkdir()
    shutil.copy(KeyPaths(keys_dir).audit_public, public)
    return public


def audit(db: Path, keys: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_script("audit.py", *args, env={"IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(keys)}
                      | env)


def assert_broken(result: subprocess.CompletedProcess, seq: int | None, *words: str) -> dict:
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "broken" and out["first_bad_record"] == seq
    for word in words:
        assert any(word in p for p in out["problems"]), out["problems"]
        assert any(word in line for line in result.stderr.splitlines()), result.stderr
    assert (f"broken at record {seq}" if seq else "broken at the chain's end") in result.stderr
    return out


def test_verify_needs_only_public_material_and_prints_the_head(db: Path, auditor_keys: Path, keys_dir: Path):
    assert sorted(p.name for p in auditor_keys.iterdir()) == ["audit_signing.pub.pem"]
    result = audit(db, auditor_keys, "verify")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    signer = load_service_signer(KeyPaths(keys_dir), None).signer_id
    assert out == {"status": "ok", "records": 5, "head": present(AuditLog(SQLiteStore(db)).head())["hash"],
                   "signers": {signer: 5}, "unsigned_legacy_records": 0,
                   "heads": {"checked": True, "files": [str(heads_of(db))], "heads": 5, "latest": 5}}


def test_verify_accepts_an_earlier_head_of_a_grown_chain(db: Path, auditor_keys: Path, keys_dir: Path):
    head = json.loads(audit(db, auditor_keys, "verify").stdout)["head"]
    service_log(db, keys_dir).append(actor="ops", action="keys.rotate")
    result = audit(db, auditor_keys, "verify", "--expect-head", head)
    assert result.returncode == 0 and json.loads(result.stdout)["records"] == 6


# -- the attacks -------------------------------------------------------------------------------------------


def test_record_2_rewritten_and_every_later_hash_recomputed(db: Path, auditor_keys: Path):
    rewrite(SQLiteStore(db), 2, {"actor": "someone else"})
    out = assert_broken(audit(db, auditor_keys, "verify"), 2, "record 2 has a bad signature", "rewritten:")
    assert not any("does not follow" in p or "altered" in p for p in out["problems"])


def test_last_record_deleted(db: Path, auditor_keys: Path):
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 5})
    assert_broken(audit(db, auditor_keys, "verify"), None,
                  "truncated tail: an exported head names record 5", "the chain ends at record 4")


def test_middle_record_deleted(db: Path, auditor_keys: Path):
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 3})
    assert_broken(audit(db, auditor_keys, "verify"), 3, "record 3 is missing: deleted from the middle")


def test_whole_chain_replaced_and_re_signed_under_a_different_key(db: Path, auditor_keys: Path):
    forger = ServiceSigner(Ed25519PrivateKey.generate())
    rewrite(SQLiteStore(db), 1, {"reason": "routine"}, signer=forger)
    assert_broken(audit(db, auditor_keys, "verify"), 1, f"record 1 is signed by an unknown key {forger.signer_id}",
                  "(and 4 more)", "full rewrite: none of the 5 exported heads is in the chain")


def test_whole_chain_replaced_with_the_stolen_service_key(db: Path, auditor_keys: Path, keys_dir: Path):
    rewrite(SQLiteStore(db), 1, {"reason": "routine"}, signer=load_service_signer(KeyPaths(keys_dir), None))
    out = assert_broken(audit(db, auditor_keys, "verify"), 1, "full rewrite")
    assert len(out["problems"]) == 1


def found_with(store: Store, keys_dir: Path, heads: Path | None, officer: str, key: Ed25519PrivateKey) -> None:
    """The founding ceremony of ``officer`` and a second founder, audited with the service key of ``keys_dir``."""
    audit = AuditLog(store, signer=load_service_signer(KeyPaths(keys_dir), None), heads=FileHeads(heads) if heads else None)
    found(Registry(store, audit), Officer(officer, key), Officer("security.lead"))


def test_forged_officer_signed_record(db: Path, auditor_keys: Path, tmp_path: Path, keys_dir: Path):
    anna = Ed25519PrivateKey.generate()
    store = SQLiteStore(db)
    found_with(store, keys_dir, heads_of(db), "anna", anna)
    genuine = AuditLog(store, signer=OfficerSigner("anna", anna), heads=FileHeads(heads_of(db)))
    genuine.append(actor="anna", action="four_eyes.approve")
    assert audit(db, auditor_keys, "verify").returncode == 0  # anna's own record, her enrolled key
    forged = AuditLog(store, signer=OfficerSigner("anna", Ed25519PrivateKey.generate()), heads=FileHeads(heads_of(db)))
    forged.append(actor="anna", action="breach.resolve", outcome="completed")
    assert_broken(audit(db, auditor_keys, "verify"), 8, "record 8 has a bad signature (signer officer:anna)")


def test_changed_record(db: Path, auditor_keys: Path):
    SQLiteStore(db).update(AUDIT_LOG, {"seq": 3}, {"reason": "nothing to see"})
    assert_broken(audit(db, auditor_keys, "verify"), 3, "record 3 was altered")


def test_changed_record_with_its_hash_recomputed(db: Path, auditor_keys: Path):
    store = SQLiteStore(db)
    doc = present(store.get(AUDIT_LOG, 2))
    doc["actor"] = "someone else"
    store.update(AUDIT_LOG, {"seq": 2}, {"actor": doc["actor"], "hash": record_hash(doc)})
    assert_broken(audit(db, auditor_keys, "verify"), 2, "record 2 has a bad signature", "record 3 does not follow")


def test_inserted_record(db: Path, auditor_keys: Path):
    store = SQLiteStore(db)
    for seq in (5, 4):  # make room at 4, then forge a record there
        doc = present(store.get(AUDIT_LOG, seq))
        store.delete(AUDIT_LOG, {"seq": seq})
        store.insert(AUDIT_LOG, doc | {"seq": seq + 1})
    prev = present(store.get(AUDIT_LOG, 3))
    forged = {"seq": 4, "at": 1.0, "actor": "intruder", "action": "breach.resolve", "outcome": "ok",
              "prev_hash": prev["hash"]}
    store.insert(AUDIT_LOG, forged | {"hash": record_hash(forged)})
    assert_broken(audit(db, auditor_keys, "verify"), 4, "record 4 is not signed", "record 5 does not follow")


def test_reordered_records(db: Path, auditor_keys: Path):
    store = SQLiteStore(db)
    two, three = present(store.get(AUDIT_LOG, 2)), present(store.get(AUDIT_LOG, 3))
    store.delete(AUDIT_LOG, {"seq": 2})
    store.delete(AUDIT_LOG, {"seq": 3})
    store.insert(AUDIT_LOG, three | {"seq": 2})
    store.insert(AUDIT_LOG, two | {"seq": 3})
    assert_broken(audit(db, auditor_keys, "verify"), 2, "record 2 was altered")


def test_records_cut_off_the_end_are_found_with_a_head_kept_by_hand_too(db: Path, auditor_keys: Path):
    head = json.loads(audit(db, auditor_keys, "verify").stdout)["head"]
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 5})
    assert_broken(audit(db, auditor_keys, "verify", "--no-heads", "--expect-head", head), None, "expected head")


# -- the heads files ------------------------------------------------------------------------------------------


def test_heads_from_several_files_in_any_order(db: Path, auditor_keys: Path, tmp_path: Path):
    lines = heads_of(db).read_text().splitlines(keepends=True)
    (tmp_path / "host-a.jsonl").write_text("".join(lines[3:]))
    (tmp_path / "host-b.log").write_text("".join(f"Nov 3 host identity-audit[9]: {line}" for line in lines[2::-1]))
    result = audit(db, auditor_keys, "verify", "--heads", str(tmp_path / "host-a.jsonl"),
                   "--heads", str(tmp_path / "host-b.log"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["heads"]["heads"] == 5


def test_a_deleted_heads_file_is_not_ok(db: Path, auditor_keys: Path):
    heads_of(db).unlink()
    assert_broken(audit(db, auditor_keys, "verify"), None, "does not exist", "no exported heads were found")


def test_no_heads_skips_them_with_a_warning(db: Path, auditor_keys: Path):
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 5})
    result = audit(db, auditor_keys, "verify", "--no-heads")
    assert result.returncode == 0 and "not checked" in result.stderr
    assert json.loads(result.stdout)["heads"] == {"checked": False}


def test_heads_sent_to_syslog_must_be_exported_and_passed(db: Path, auditor_keys: Path):
    result = audit(db, auditor_keys, "verify", IDENTITY_AUDIT_HEADS="syslog:")
    assert result.returncode == 2 and "journalctl -t identity-audit -o cat" in result.stderr


def test_verify_refuses_without_a_trusted_public_key(db: Path, tmp_path: Path):
    result = audit(db, tmp_path / "empty-keys", "verify")
    assert result.returncode == 2 and "audit_signing.pub.pem" in result.stderr and "--audit-public-key" in result.stderr


def test_a_retired_audit_key_is_trusted_when_named(db: Path, auditor_keys: Path, tmp_path: Path, keys_dir: Path):
    """After replacing the audit key, the old public half still vouches for the old records."""
    old_public = tmp_path / "retired.pub.pem"
    shutil.copy(auditor_keys / "audit_signing.pub.pem", old_public)
    new = Ed25519PrivateKey.generate()
    (auditor_keys / "audit_signing.pub.pem").write_bytes(new.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    AuditLog(SQLiteStore(db), signer=ServiceSigner(new), heads=FileHeads(heads_of(db))).append(actor="ops", action="x")
    assert audit(db, auditor_keys, "verify").returncode == 1
    result = audit(db, auditor_keys, "verify", "--audit-public-key", str(old_public))
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["signers"].values()) == [1, 5]


def test_show_lists_records_in_order_and_by_incident(db: Path, auditor_keys: Path):
    everything = json.loads(audit(db, auditor_keys, "show").stdout)
    assert everything["count"] == 5 and [r["seq"] for r in everything["records"]] == [1, 2, 3, 4, 5]
    assert everything["records"][0]["actor"] == "officer1" and everything["records"][0]["counts"] == {"resolved": 1}
    assert everything["records"][0]["signer"].startswith("service:") and everything["records"][0]["signature"]
    one = json.loads(audit(db, auditor_keys, "show", "--incident", "INC-8").stdout)
    assert one["incident"] == "INC-8" and [r["seq"] for r in one["records"]] == [2, 4]
    none = json.loads(audit(db, auditor_keys, "show", "--incident", "INC-404").stdout)
    assert none["records"] == [] and none["count"] == 0


# -- the keys ---------------------------------------------------------------------------------------------------


def test_keys_init_if_absent_adds_the_audit_key_to_an_older_keys_directory(tmp_path: Path, keys_dir: Path):
    paths = KeyPaths(keys_dir)
    paths.audit_signing.unlink()
    paths.audit_public.unlink()
    env = {"IDENTITY_KEYS_DIR": str(keys_dir), "IDENTITY_DB_URI": f"sqlite:///{tmp_path}/identity.sqlite3"}
    before = {p.name: p.read_bytes() for p in keys_dir.iterdir() if p.is_file()}
    result = run_script("keys.py", "init", "--development", "--if-absent", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == [str(paths.audit_signing), str(paths.audit_public)]
    assert paths.audit_signing.stat().st_mode & 0o777 == 0o600 and paths.audit_public.stat().st_mode & 0o777 == 0o644
    assert all(p.read_bytes() == data for name, data in before.items() if (p := keys_dir / name))
    again = run_script("keys.py", "init", "--development", "--if-absent", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["added"] == []


def test_keys_init_encrypts_the_audit_key_with_the_passphrase(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_KEYS_PASSPHRASE": "pass",
           "IDENTITY_DPO_KEY_PASSPHRASE": "dpo", "IDENTITY_DB_URI": f"sqlite:///{tmp_path}/x.sqlite3"}
    assert run_script("keys.py", "init", env=env).returncode == 0
    assert b"ENCRYPTED" in (tmp_path / "k" / "audit_signing.pem").read_bytes()
    load_service_signer(KeyPaths(tmp_path / "k"), "pass")


def test_keys_rotate_is_audited(tmp_path: Path):
    db = tmp_path / "identity.sqlite3"
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{db}"}
    assert run_script("keys.py", "init", "--development", env=env).returncode == 0
    rotated = run_script("keys.py", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    records = list(AuditLog(SQLiteStore(db)).records())
    assert [r["action"] for r in records] == ["keys.rotate"] and records[0]["outcome"] == "ok"
    assert sorted(records[0]["details"]["states"].values()) == ["active", "next"]
    verified = json.loads(run_script("audit.py", "verify", env=env).stdout)
    assert verified["records"] == 1 and verified["heads"]["heads"] == 1


def test_keys_rotate_refuses_when_the_audit_log_is_unreachable(tmp_path: Path):
    (tmp_path / "not-a-directory").write_text("")
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"),
           "IDENTITY_DB_URI": f"sqlite:///{tmp_path}/not-a-directory/x.sqlite3"}
    assert run_script("keys.py", "init", "--development", env=env).returncode == 0
    before = (tmp_path / "k" / "signing.json").read_text()
    refused = run_script("keys.py", "rotate", env=env)
    assert refused.returncode == 1 and "nothing rotated" in refused.stderr
    assert (tmp_path / "k" / "signing.json").read_text() == before


def test_keys_rotate_refuses_when_the_heads_cannot_be_exported(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{tmp_path}/x.sqlite3",
           "IDENTITY_AUDIT_HEADS": f"syslog:{tmp_path}/no-syslog.sock"}
    assert run_script("keys.py", "init", "--development", env=env).returncode == 0
    before = (tmp_path / "k" / "signing.json").read_text()
    refused = run_script("keys.py", "rotate", env=env)
    assert refused.returncode == 1 and "nothing rotated" in refused.stderr and "IDENTITY_AUDIT_HEADS" in refused.stderr
    assert (tmp_path / "k" / "signing.json").read_text() == before


# -- the DPO's machine: only public material, records signed by the acting officer -----------------------------


@pytest.fixture
def dpo_machine(tmp_path: Path, keys_dir: Path) -> tuple[dict[str, str], Path, Path]:
    """A vault, a keys directory with public halves only, and officer dpo.jansen's enrolled key (encrypted)."""
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    people = populate(store, keys_dir)
    officer = Ed25519PrivateKey.generate()
    found_with(store, keys_dir, None, "dpo.jansen", officer)
    key_path = tmp_path / "dpo.jansen.key"
    key_path.write_bytes(private_key_pem(officer, "officer-pass"))
    public = tmp_path / "dpo-keys"
    public.mkdir()
    for name in ("dpo_public.pem", "audit_signing.pub.pem"):
        shutil.copy(keys_dir / name, public)
    listing = write_list(tmp_path / "affected.txt", people.order)
    env = {"IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(public),
           "IDENTITY_OFFICER_KEY_PASSPHRASE": "officer-pass"}
    return env, key_path, listing


def counts_only(listing: Path, *extra: str, operator: str = "dpo.jansen") -> list[str]:
    return ["--incident", "INC-9", "--operator", operator, "--reason", "counting for the authority",
            "--pseudonyms", str(listing), "--counts-only", *extra]


def test_the_dpo_signs_a_run_with_their_officer_key(dpo_machine, tmp_path: Path):
    env, key_path, listing = dpo_machine
    result = run_script("breach_contact.py", *counts_only(listing, "--officer-key", str(key_path)), env=env)
    assert result.returncode == 0, result.stderr
    records = list(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).records())
    assert [(r["action"], r["actor"], r["signer"]) for r in records] == [
        ("officers.found", "security.lead", records[0]["signer"]), ("breach.count", "dpo.jansen", "officer:dpo.jansen")]
    verified = run_script("audit.py", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["signers"] == {"officer:dpo.jansen": 1, records[0]["signer"]: 1}


def test_without_any_audit_key_nothing_runs_and_the_officer_key_is_named(dpo_machine):
    env, _, listing = dpo_machine
    result = run_script("breach_contact.py", *counts_only(listing), env=env)
    assert result.returncode == 2 and "--officer-key" in result.stderr and "audit_signing.pem" in result.stderr
    assert present(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).head())["seq"] == 1  # the founding


def test_an_officer_key_that_is_not_the_operators_enrolled_key_is_refused(dpo_machine, tmp_path: Path):
    env, key_path, listing = dpo_machine
    other = tmp_path / "other.key"
    other.write_bytes(private_key_pem(Ed25519PrivateKey.generate(), "officer-pass"))
    for args in (counts_only(listing, "--officer-key", str(other)),
                 counts_only(listing, "--officer-key", str(key_path), operator="anna")):
        result = run_script("breach_contact.py", *args, env=env)
        assert result.returncode == 2 and "is not the enrolled key of officer" in result.stderr
    assert present(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).head())["seq"] == 1  # the founding


def test_on_the_operators_host_the_service_audit_key_signs(dpo_machine, keys_dir: Path):
    env, _, listing = dpo_machine
    result = run_script("breach_contact.py", *counts_only(listing), env=env | {"IDENTITY_KEYS_DIR": str(keys_dir)})
    assert result.returncode == 0, result.stderr
    record = present(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).head())
    assert record["signer"] == load_service_signer(KeyPaths(keys_dir), None).signer_id


def test_a_usage_error_is_audited_with_the_officer_key(dpo_machine):
    env, key_path, listing = dpo_machine
    result = run_script("breach_contact.py", *counts_only(listing, "--officer-key", str(key_path)), "--bogus", env=env)
    assert result.returncode == 2
    record = present(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).head())
    assert record["outcome"] == "refused" and record["signer"] == "officer:dpo.jansen"
