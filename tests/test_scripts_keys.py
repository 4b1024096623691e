"""``scripts/keys.py`` as an operator runs it: JSON on stdout, diagnostics on stderr."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from identity.audit import AuditLog
from identity.keys.dpo_shares import KeyMaterialError, unlock
from identity.keys.files import load_dpo_public_key
from tests.terminal_support import run_on_terminal

ROOT = Path(__file__).resolve().parent.parent


def run_keys(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "keys.py"), *args],
                          capture_output=True, text=True, env=full_env, stdin=subprocess.DEVNULL, timeout=60)


def test_init_list_rotate(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    created = run_keys("init", "--development", env=env)
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["status"] == "created" and out["development"] is True
    assert "OFFLINE" in created.stderr

    again = run_keys("init", env=env)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr and again.stdout == ""
    assert json.loads(run_keys("init", "--if-absent", env=env).stdout)["status"] == "exists"
    pairwise = tmp_path / "k" / "pairwise_subject.key"
    assert stat.S_IMODE(pairwise.stat().st_mode) == 0o600
    kept = pairwise.read_bytes()
    pairwise.unlink()  # a directory from before pairwise subjects
    added = run_keys("init", "--if-absent", env=env)
    assert json.loads(added.stdout)["added"] == [str(pairwise)] and "never rotated" in added.stderr
    assert pairwise.read_bytes() != kept and stat.S_IMODE(pairwise.stat().st_mode) == 0o600

    rotated = json.loads(run_keys("rotate", env=env).stdout)
    assert sorted(k["state"] for k in rotated["keys"]) == ["active", "next"]
    listed = json.loads(run_keys("list", env=env).stdout)
    assert listed["keys"] == rotated["keys"]


PRODUCTION = {"IDENTITY_ENV": "production", "IDENTITY_ISSUER": "https://id.example.org",
              "IDENTITY_KEYS_PASSPHRASE": "a production passphrase", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
              "IDENTITY_UPSTREAM_CLIENT_ID": "c", "IDENTITY_UPSTREAM_CLIENT_SECRET": "s"}


def test_development_init_writes_shares_never_the_whole_dpo_key(tmp_path: Path):
    created = run_keys("init", "--development", env={"IDENTITY_KEYS_DIR": str(tmp_path / "k")})
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert sorted(p.name for p in (tmp_path / "k").glob("dpo_*")) == [
        "dpo_public.pem", "dpo_share_1.json", "dpo_share_2.json", "dpo_share_3.json"]
    assert out["dpo_shares_belong_offline"] is True and len(out["dpo_public_key_sha256"]) == 64
    assert "2 of 3" in created.stderr


def test_production_init_takes_the_public_key_of_an_offline_key_set_only(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k")} | PRODUCTION
    assert run_keys("init", "--development", env=env).returncode == 1
    refused = run_keys("init", env=env | {"IDENTITY_DPO_KEY_PASSPHRASE": "d"})
    assert refused.returncode == 1 and "dpo-create" in refused.stderr and not (tmp_path / "k" / "signing.json").exists()
    offline = run_keys("dpo-create", "--out", str(tmp_path / "dpo"), "--holder", "anna", "--holder", "bram",
                       env={"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DPO_KEY_PASSPHRASE": "d" * 12})
    assert offline.returncode == 0, offline.stderr
    weak = run_keys("init", "--dpo-public", str(tmp_path / "dpo" / "dpo_public.pem"),
                    env=env | {"IDENTITY_KEYS_PASSPHRASE": "guessable"})
    assert weak.returncode == 1 and "at least 16 characters" in weak.stderr
    assert not (tmp_path / "k" / "signing.json").exists()
    ok = run_keys("init", "--dpo-public", str(tmp_path / "dpo" / "dpo_public.pem"), env=env)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["encrypted"] is True and out["dpo_shares_belong_offline"] is False
    assert out["dpo_public_key_sha256"] == json.loads(offline.stdout)["public_key_sha256"]
    assert [p.name for p in (tmp_path / "k").glob("dpo_*")] == ["dpo_public.pem"]


def test_dpo_create_writes_private_shares_and_the_public_key(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DPO_KEY_PASSPHRASE": "one for the demo"}
    created = run_keys("dpo-create", "--out", str(tmp_path / "dpo"), "--holder", "anna", "--holder", "bram",
                       "--holder", "carl", "--threshold", "2", env=env)
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert [(s["index"], s["holder"]) for s in out["shares"]] == [(1, "anna"), (2, "bram"), (3, "carl")]
    for share in out["shares"]:
        assert stat.S_IMODE(os.stat(share["file"]).st_mode) == 0o600
    assert "never written" in created.stderr
    again = run_keys("dpo-create", "--out", str(tmp_path / "dpo"), "--holder", "anna", "--holder", "bram", env=env)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


@pytest.mark.parametrize("args, env, problem", [
    (["--holder", "anna", "--holder", "bram", "--threshold", "1"], {"IDENTITY_DPO_KEY_PASSPHRASE": "x"},
     "one share must never be enough"),
    (["--holder", "anna"], {"IDENTITY_DPO_KEY_PASSPHRASE": "x"}, "threshold ≤ holders"),
    (["--holder", "anna", "--holder", "bram"], {}, "run on a terminal"),
    (["--holder", "anna", "--holder", "bram"], PRODUCTION | {"IDENTITY_DPO_KEY_PASSPHRASE": "x"},
     "in production each holder types their own passphrase"),
])
def test_dpo_create_refusals(tmp_path: Path, args, env, problem):
    result = run_keys("dpo-create", "--out", str(tmp_path / "dpo"), *args,
                      env={"IDENTITY_KEYS_DIR": str(tmp_path / "k")} | env)
    assert result.returncode == 1 and problem in result.stderr and not (tmp_path / "dpo").exists()


def test_dpo_create_refuses_the_services_keys_directory(tmp_path: Path):
    result = run_keys("dpo-create", "--out", str(tmp_path / "k"), "--holder", "a", "--holder", "b",
                      env={"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DPO_KEY_PASSPHRASE": "x"})
    assert result.returncode == 1 and "the service's keys directory" in result.stderr


def terminal_env(tmp_path: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_KEYS_DIR": str(tmp_path / "k")} | PRODUCTION


def test_each_holder_types_their_own_passphrase_at_the_terminal(tmp_path: Path):
    keys = [sys.executable, str(ROOT / "scripts" / "keys.py"), "dpo-create", "--out", str(tmp_path / "dpo"),
            "--holder", "anna", "--holder", "bram"]
    same = run_on_terminal(keys, terminal_env(tmp_path), [
        ("anna: choose", "a shared secret!"), ("anna: the same", "a shared secret!"),
        ("bram: choose", "a shared secret!"), ("bram: the same", "a shared secret!")])
    assert same.exit_code == 1 and "two holders chose the same passphrase" in same.output
    assert not (tmp_path / "dpo").exists()
    short = run_on_terminal(keys, terminal_env(tmp_path), [("anna: choose", "short")])
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    typo = run_on_terminal(keys, terminal_env(tmp_path), [("anna: choose", "anna's passphrase"),
                                                          ("anna: the same", "anna's passphrasE")])
    assert typo.exit_code == 1 and "the two passphrases differ" in typo.output
    ok = run_on_terminal(keys, terminal_env(tmp_path), [
        ("anna: choose", "anna's passphrase"), ("anna: the same", "anna's passphrase"),
        ("bram: choose", "bram's own secret"), ("bram: the same", "bram's own secret")])
    assert ok.exit_code == 0 and not ok.unanswered, ok.output
    assert "anna's passphrase" not in ok.output  # never echoed
    public = load_dpo_public_key(tmp_path / "dpo" / "dpo_public.pem")
    answers = {"anna": "anna's passphrase", "bram": "bram's own secret"}
    shares = sorted((tmp_path / "dpo").glob("dpo_share_*.json"))
    assert unlock(shares, public, lambda share: answers[share.holder]).private_key
    with pytest.raises(KeyMaterialError, match="holder bram\\): wrong passphrase"):
        unlock(shares, public, lambda share: answers["anna"])


def test_help_on_each_command():
    for command in ("init", "rotate", "list", "dpo-create", "dpo-reseal", "passphrase"):
        assert run_keys(command, "--help", env={}).returncode == 0


def test_rotate_of_encrypted_keys_without_passphrase_is_refused(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_KEYS_PASSPHRASE": "p", "IDENTITY_DB_URI": db}
    assert run_keys("init", env=env).returncode == 0
    refused = run_keys("rotate", env={"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": db})
    assert refused.returncode == 1 and "IDENTITY_KEYS_PASSPHRASE" in refused.stderr



def test_passphrase_moves_the_keys_to_a_new_passphrase_and_audits_it(tmp_path: Path):
    from identity.store import SQLiteStore

    db = tmp_path / "db.sqlite3"
    old, new = "the old keys passphrase", "the new keys passphrase"
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{db}",
           "IDENTITY_KEYS_PASSPHRASE": old, "IDENTITY_OPERATOR": "ops-ana"}
    assert run_keys("init", env=env).returncode == 0
    signing_pem = next((tmp_path / "k" / "signing").glob("*.pem"))
    before = signing_pem.read_bytes()
    wrong = run_keys("passphrase", env=env | {"IDENTITY_KEYS_PASSPHRASE": "a guess",
                                              "IDENTITY_KEYS_NEW_PASSPHRASE": new})
    assert wrong.returncode == 1 and "nothing was changed" in wrong.stderr and signing_pem.read_bytes() == before
    unasked = run_keys("passphrase", env=env)
    assert unasked.returncode == 1 and "IDENTITY_KEYS_NEW_PASSPHRASE" in unasked.stderr

    changed = run_keys("passphrase", env=env | {"IDENTITY_KEYS_NEW_PASSPHRASE": new})

    assert changed.returncode == 0, changed.stderr
    out = json.loads(changed.stdout)
    assert out["status"] == "changed" and len(out["changed"]) == 3 and out["already_changed"] == []
    assert "restart" in changed.stderr and old not in changed.stderr + changed.stdout
    assert new not in changed.stderr + changed.stdout
    assert run_keys("rotate", env=env).returncode == 1  # the old passphrase opens nothing now
    assert run_keys("rotate", env=env | {"IDENTITY_KEYS_PASSPHRASE": new}).returncode == 0
    records = list(AuditLog(SQLiteStore(db)).records())
    done = [r for r in records if r["action"] == "keys.passphrase"]
    assert [(r["outcome"], r["actor"], r["counts"]) for r in done] == [
        ("ok", "ops-ana", {"files_changed": 3, "files_already_changed": 0})]
    assert not any(old in json.dumps(r) or new in json.dumps(r) for r in records)


def test_passphrase_in_production_refuses_a_short_new_one(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "IDENTITY_KEYS_PASSPHRASE": "the current production passphrase"}
    assert run_keys("init", env=env).returncode == 0
    production = env | {k: v for k, v in PRODUCTION.items() if k != "IDENTITY_KEYS_PASSPHRASE"}
    short = run_keys("passphrase", env=production | {"IDENTITY_KEYS_NEW_PASSPHRASE": "short one"})
    assert short.returncode == 1 and "at least 16 characters" in short.stderr
    same = run_keys("passphrase", env=production | {"IDENTITY_KEYS_NEW_PASSPHRASE": env["IDENTITY_KEYS_PASSPHRASE"]})
    assert same.returncode == 1 and "is the current one" in same.stderr


def test_the_new_passphrase_is_typed_twice_at_the_terminal(tmp_path: Path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "IDENTITY_KEYS_PASSPHRASE": "the old keys passphrase"}
    assert run_keys("init", env=base).returncode == 0
    command = [sys.executable, str(ROOT / "scripts" / "keys.py"), "passphrase"]
    typo = run_on_terminal(command, base, [("New passphrase", "a brand new passphrase"),
                                           ("again", "a brand new passphrasE")])
    assert typo.exit_code == 1 and "differ" in typo.output
    ok = run_on_terminal(command, base, [("New passphrase", "a brand new passphrase"),
                                         ("again", "a brand new passphrase")])
    assert ok.exit_code == 0 and not ok.unanswered, ok.output
    assert "a brand new passphrase" not in ok.output  # never echoed
    assert run_keys("rotate", env=base | {"IDENTITY_KEYS_PASSPHRASE": "a brand new passphrase"}).returncode == 0


def test_dpo_reseal_retires_the_old_whole_key(tmp_path: Path, keys_dir: Path):
    """The migration end to end: after a pass, the old whole key opens nothing and two shares open all."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from identity.keys import Keyring
    from identity.keys.files import private_key_pem
    from identity.sealing import Sealer
    from identity.store import SQLiteStore
    from identity.vault import Vault
    from tests.breach_support import EMAILS, write_list

    old = X25519PrivateKey.generate()
    old_file = tmp_path / "old-dpo.pem"
    old_file.write_bytes(private_key_pem(old, "old passphrase"))
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    vault = Vault(store, pepper=Keyring(keys_dir, passphrase=None).pepper, sealer=Sealer(old.public_key()))
    listing = write_list(tmp_path / "all.txt", [vault.pseudonymise(e).identity.pseudonym for e in EMAILS])
    store.close()
    env = {"IDENTITY_KEYS_DIR": str(keys_dir), "IDENTITY_DB_URI": f"sqlite:///{db}",
           "IDENTITY_DPO_KEY_PASSPHRASE": "old passphrase", "IDENTITY_OPERATOR": "dpo.jansen"}
    reseal = ["dpo-reseal", "--old-key", str(old_file), "--state", str(tmp_path / "reseal.json"), "--workers", "1"]
    first = run_keys(*reseal, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["counts"] == {"resealed": 12, "not_old_key": 0, "changed": 0, "erased": 0}
    assert "Run the same command again" in first.stderr
    second = run_keys(*reseal, env=env)
    assert json.loads(second.stdout)["counts"]["resealed"] == 0 and "destroy it" in second.stderr

    breach = [sys.executable, str(ROOT / "scripts" / "breach_contact.py"), "--incident", "INC-1", "--operator", "dpo",
              "--reason", "after the migration", "--pseudonyms", str(listing), "--stdout", "--workers", "0"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    with_old = subprocess.run([*breach, "--dpo-key", str(old_file)], capture_output=True, text=True, env=full_env,
                              stdin=subprocess.DEVNULL, timeout=60)
    assert with_old.returncode == 1 and "wrong DPO key" in with_old.stderr
    del full_env["IDENTITY_DPO_KEY_PASSPHRASE"]  # development shares need none
    with_shares = subprocess.run([*breach, "--dpo-key", str(keys_dir / "dpo_share_2.json"), "--dpo-key",
                                  str(keys_dir / "dpo_share_3.json")], capture_output=True, text=True, env=full_env,
                                 stdin=subprocess.DEVNULL, timeout=60)
    assert with_shares.returncode == 0, with_shares.stderr
    assert with_shares.stdout.splitlines()[-1] == "resolved=12 unknown=0 erased=0 malformed=0"
    actions = [(r["action"], r["outcome"]) for r in AuditLog(SQLiteStore(db)).records()]
    assert actions[:4] == [("keys.dpo_reseal", "started"), ("keys.dpo_reseal", "completed")] * 2
