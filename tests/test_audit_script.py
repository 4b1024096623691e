"""``scripts/audit.py`` as an auditor runs it: verify (exit 0 + head, exit 1 + first bad record), show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from identity.audit import AUDIT_LOG, AuditLog, record_hash
from identity.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, env=full_env, stdin=subprocess.DEVNULL, timeout=60)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.sqlite3"
    store = SQLiteStore(path)
    log = AuditLog(store, clock=lambda: 1_700_000_000.0)
    for i in range(1, 6):
        log.append(actor=f"officer{i}", action="breach.resolve", reason=f"reason {i}",
                   incident="INC-7" if i % 2 else "INC-8", counts={"resolved": i})
    store.close()
    return path


def audit(db: Path, *args: str) -> subprocess.CompletedProcess:
    return run_script("audit.py", *args, env={"IDENTITY_DB_URI": f"sqlite:///{db}"})


def test_verify_prints_the_head_of_a_sound_chain(db: Path):
    result = audit(db, "verify")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"status": "ok", "records": 5, "head": AuditLog(SQLiteStore(db)).head()["hash"]}


def test_verify_accepts_an_earlier_head_of_a_grown_chain(db: Path):
    head = json.loads(audit(db, "verify").stdout)["head"]
    AuditLog(SQLiteStore(db)).append(actor="ops", action="keys.rotate")
    result = audit(db, "verify", "--expect-head", head)
    assert result.returncode == 0 and json.loads(result.stdout)["records"] == 6


def assert_broken_at(result: subprocess.CompletedProcess, seq: int | None, words: str) -> None:
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["status"] == "broken" and out["first_bad_record"] == seq and words in out["problem"]
    assert (f"record {seq}" if seq else "chain's end") in result.stderr


def test_changed_record(db: Path):
    SQLiteStore(db).update(AUDIT_LOG, {"seq": 3}, {"reason": "nothing to see"})
    assert_broken_at(audit(db, "verify"), 3, "altered")


def test_changed_record_with_its_hash_recomputed(db: Path):
    store = SQLiteStore(db)
    doc = store.get(AUDIT_LOG, 2)
    doc["actor"] = "someone else"
    store.update(AUDIT_LOG, {"seq": 2}, {"actor": doc["actor"], "hash": record_hash(doc)})
    assert_broken_at(audit(db, "verify"), 3, "does not follow")


def test_deleted_record(db: Path):
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 4})
    assert_broken_at(audit(db, "verify"), 4, "missing")


def test_inserted_record(db: Path):
    store = SQLiteStore(db)
    for seq in (5, 4):  # make room at 4, then forge a record there
        doc = store.get(AUDIT_LOG, seq)
        store.delete(AUDIT_LOG, {"seq": seq})
        store.insert(AUDIT_LOG, doc | {"seq": seq + 1})
    prev = store.get(AUDIT_LOG, 3)
    forged = {"seq": 4, "at": 1.0, "actor": "intruder", "action": "breach.resolve", "outcome": "ok",
              "prev_hash": prev["hash"]}
    store.insert(AUDIT_LOG, forged | {"hash": record_hash(forged)})
    assert_broken_at(audit(db, "verify"), 5, "does not follow")


def test_reordered_records(db: Path):
    store = SQLiteStore(db)
    two, three = store.get(AUDIT_LOG, 2), store.get(AUDIT_LOG, 3)
    store.delete(AUDIT_LOG, {"seq": 2})
    store.delete(AUDIT_LOG, {"seq": 3})
    store.insert(AUDIT_LOG, three | {"seq": 2})
    store.insert(AUDIT_LOG, two | {"seq": 3})
    assert_broken_at(audit(db, "verify"), 2, "")


def test_records_cut_off_the_end_are_found_with_a_head_kept_elsewhere(db: Path):
    head = json.loads(audit(db, "verify").stdout)["head"]
    SQLiteStore(db).delete(AUDIT_LOG, {"seq": 5})
    assert audit(db, "verify").returncode == 0  # the links alone cannot show a truncation
    assert_broken_at(audit(db, "verify", "--expect-head", head), None, "expected head")


def test_show_lists_records_in_order_and_by_incident(db: Path):
    everything = json.loads(audit(db, "show").stdout)
    assert everything["count"] == 5 and [r["seq"] for r in everything["records"]] == [1, 2, 3, 4, 5]
    assert everything["records"][0]["actor"] == "officer1" and everything["records"][0]["counts"] == {"resolved": 1}
    one = json.loads(audit(db, "show", "--incident", "INC-8").stdout)
    assert one["incident"] == "INC-8" and [r["seq"] for r in one["records"]] == [2, 4]
    none = json.loads(audit(db, "show", "--incident", "INC-404").stdout)
    assert none["records"] == [] and none["count"] == 0


def test_keys_rotate_is_audited(tmp_path: Path):
    db = tmp_path / "identity.sqlite3"
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{db}"}
    assert run_script("keys.py", "init", "--development", env=env).returncode == 0
    rotated = run_script("keys.py", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    records = list(AuditLog(SQLiteStore(db)).records())
    assert [r["action"] for r in records] == ["keys.rotate"] and records[0]["outcome"] == "ok"
    assert sorted(records[0]["details"]["states"].values()) == ["active", "next"]
    assert json.loads(run_script("audit.py", "verify", env=env).stdout)["records"] == 1


def test_keys_rotate_refuses_when_the_audit_log_is_unreachable(tmp_path: Path):
    (tmp_path / "not-a-directory").write_text("")
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"),
           "IDENTITY_DB_URI": f"sqlite:///{tmp_path}/not-a-directory/x.sqlite3"}
    assert run_script("keys.py", "init", "--development", env=env).returncode == 0
    before = (tmp_path / "k" / "signing.json").read_text()
    refused = run_script("keys.py", "rotate", env=env)
    assert refused.returncode == 1 and "nothing rotated" in refused.stderr
    assert (tmp_path / "k" / "signing.json").read_text() == before
