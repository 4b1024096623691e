"""``scripts/breach_contact.py`` and ``scripts/four_eyes.py`` as the DPO and officers run them."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from identity.audit import AuditLog
from identity.store import SQLiteStore
from tests.audit_support import signed_log
from tests.breach_support import EMAILS, NOTICE, Inbox, Population, populate, write_list
from tests.lookup_support import present

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "resolved=11 unknown=0 erased=1 malformed=1"


def run_script(name: str, *args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | env
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True,
                          env=full_env, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          timeout=120)


@pytest.fixture
def world(tmp_path: Path, keys_dir: Path) -> tuple[Population, dict[str, str], Path]:
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    people = populate(store, keys_dir)
    store.close()
    listing = write_list(tmp_path / "affected.txt", people.order + ["not-a-pseudonym"])
    env = {"IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(keys_dir)}
    return people, env, listing


def base_args(tmp_path: Path, keys_dir: Path, listing: Path | str) -> list[str]:
    return ["--incident", "INC-2026-01", "--operator", "dpo.jansen", "--reason", "analytics bucket leaked",
            "--pseudonyms", str(listing), "--dpo-key", str(keys_dir / "dpo_share_1.json"),
            "--dpo-key", str(keys_dir / "dpo_share_3.json"), "--workers", "2"]


def records(env: dict[str, str]) -> list[dict]:
    return list(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).records())


def text(result: subprocess.CompletedProcess, stream: str = "stdout") -> str:
    return getattr(result, stream).decode("utf-8")


def test_resolve_to_a_private_csv_and_end_with_the_summary_line(world, tmp_path, keys_dir):
    people, env, listing = world
    out = tmp_path / "contacts.csv"
    result = run_script("breach_contact.py", *base_args(tmp_path, keys_dir, listing), "--out", str(out), env=env)
    assert result.returncode == 0, text(result, "stderr")
    assert text(result).splitlines() == [SUMMARY]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["pseudonym", "email"] and len(rows) == 12
    assert "malformed lines: 13" in text(result, "stderr")
    head = present(AuditLog(SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))).head())["hash"]
    assert f"audit log head: record 2 {head}" in text(result, "stderr")
    assert not any(e in text(result, "stderr") for e in EMAILS)
    verify = run_script("audit.py", "verify", env=env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["records"] == 2


def test_refusal_without_a_reason_is_audited_and_prints_nothing(world, tmp_path, keys_dir):
    _, env, listing = world
    args = [a for a in base_args(tmp_path, keys_dir, listing) if a not in ("--reason", "analytics bucket leaked")]
    result = run_script("breach_contact.py", *args, "--out", str(tmp_path / "c.csv"), env=env)
    assert result.returncode == 1 and result.stdout == b"" and "--reason is required" in text(result, "stderr")
    assert not (tmp_path / "c.csv").exists()
    assert [(r["action"], r["outcome"], r["actor"]) for r in records(env)] == [("breach.resolve", "refused",
                                                                                  "dpo.jansen")]


def test_a_command_line_that_does_not_parse_is_refused_and_audited(world, tmp_path, keys_dir):
    _, env, listing = world
    result = run_script("breach_contact.py", *base_args(tmp_path, keys_dir, listing), "--out", str(tmp_path / "c.csv"),
                        "--workers", "many", env=env)
    assert result.returncode == 2 and result.stdout == b"" and "--workers" in text(result, "stderr")
    (record,) = records(env)
    assert (record["outcome"], record["actor"], record["incident"]) == ("refused", "dpo.jansen", "INC-2026-01")
    assert record["details"]["problem"].startswith("usage:")


def test_wrong_passphrase_is_refused_and_audited(world, tmp_path, keys_dir):
    from tests.breach_support import encrypted_dpo_key
    _, env, listing = world
    key = encrypted_dpo_key(keys_dir, tmp_path / "dpo.pem", "right one")  # a whole key (vault not yet re-sealed)
    args = base_args(tmp_path, keys_dir, listing)
    args[args.index("--dpo-key"):args.index("--dpo-key") + 4] = ["--dpo-key", str(key)]
    result = run_script("breach_contact.py", *args, "--out", str(tmp_path / "c.csv"),
                        env=env | {"IDENTITY_DPO_KEY_PASSPHRASE": "wrong one"})
    assert result.returncode == 1 and "wrong passphrase" in text(result, "stderr")
    assert not (tmp_path / "c.csv").exists() and records(env)[0]["outcome"] == "refused"


def test_one_share_holder_alone_is_refused_and_audited(world, tmp_path, keys_dir):
    _, env, listing = world
    args = base_args(tmp_path, keys_dir, listing)
    del args[args.index("--dpo-key"):args.index("--dpo-key") + 2]  # only the holder of share 3 is present
    result = run_script("breach_contact.py", *args, "--out", str(tmp_path / "c.csv"), env=env)
    assert result.returncode == 1 and result.stdout == b""
    assert "2 different shares of DPO key set" in text(result, "stderr") and "1 given" in text(result, "stderr")
    assert not (tmp_path / "c.csv").exists()
    (record,) = records(env)
    assert record["outcome"] == "refused" and "one holder alone opens nothing" in record["details"]["problem"]


def test_a_share_under_the_wrong_passphrase_is_refused(tmp_path):
    from identity.keys import init_keys
    keys_dir = tmp_path / "holders-keys"
    init_keys(keys_dir, passphrase=None, dpo_passphrase="the holders' passphrase", development=True, now=0)
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    listing = write_list(tmp_path / "affected.txt", populate(store, keys_dir).order)
    store.close()
    env = {"IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(keys_dir)}
    args = [*base_args(tmp_path, keys_dir, listing), "--out", str(tmp_path / "c.csv")]
    wrong = run_script("breach_contact.py", *args, env=env | {"IDENTITY_DPO_KEY_PASSPHRASE": "not it"})
    assert wrong.returncode == 1 and "dpo_share_1.json (share 1 of 3, holder holder-1): wrong passphrase" in \
        text(wrong, "stderr")
    unasked = run_script("breach_contact.py", *args, env=env)  # no terminal: nobody can type a passphrase
    assert unasked.returncode == 1 and "no passphrase for" in text(unasked, "stderr")
    right = run_script("breach_contact.py", *args, env=env | {"IDENTITY_DPO_KEY_PASSPHRASE": "the holders' passphrase"})
    assert right.returncode == 0, text(right, "stderr")
    assert [r["outcome"] for r in records(env)] == ["refused", "refused", "started", "completed"]


def test_each_holder_types_their_passphrase_at_the_dpos_terminal(tmp_path):
    from identity.keys import init_keys
    from identity.keys.dpo_shares import Holder, create_key_set, write_key_set
    from tests.terminal_support import run_on_terminal

    key_set = create_key_set([Holder("anna", "anna's passphrase"), Holder("bram", "bram's passphrase"),
                              Holder("carl", "carl's passphrase")], 2)
    shares = write_key_set(tmp_path / "offline", key_set)  # on the holders' own media
    keys_dir = tmp_path / "keys"
    init_keys(keys_dir, passphrase=None, dpo_passphrase=None, development=True, now=0, dpo_public=key_set.public_key)
    db = tmp_path / "identity.sqlite3"
    store = SQLiteStore(db)
    listing = write_list(tmp_path / "affected.txt", populate(store, keys_dir).order)
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DB_URI": f"sqlite:///{db}", "IDENTITY_KEYS_DIR": str(keys_dir)}
    argv = [sys.executable, str(ROOT / "scripts" / "breach_contact.py"), "--incident", "INC-2026-01", "--operator",
            "dpo.jansen", "--reason", "analytics bucket leaked", "--pseudonyms", str(listing), "--dpo-key",
            str(shares[2]), "--dpo-key", str(shares[1]), "--workers", "0", "--out", str(tmp_path / "c.csv")]
    run = run_on_terminal(argv, env, [("carl: passphrase of DPO key share 3 of 3", "carl's passphrase"),
                                      ("bram: passphrase of DPO key share 2 of 3", "bram's passphrase")])
    assert run.exit_code == 0 and not run.unanswered, run.output
    assert "resolved=11 unknown=0 erased=1 malformed=0" in run.output and "passphrase'" not in run.output
    started = next(r for r in records(env) if r["outcome"] == "started")
    assert [s["holder"] for s in started["details"]["dpo_key"]["shares"]] == ["carl", "bram"]


def test_stdout_only_with_the_flag_and_stdin_as_the_list(world, tmp_path, keys_dir):
    people, env, listing = world
    result = run_script("breach_contact.py", *base_args(tmp_path, keys_dir, "-"), "--stdout", env=env,
                        stdin=listing.read_bytes())
    assert result.returncode == 0, text(result, "stderr")
    lines = text(result).splitlines()
    assert lines[0] == "pseudonym,email" and lines[-1] == SUMMARY and len(lines) == 13
    assert records(env)[0]["details"]["output"] == "stdout"


def test_counts_for_the_authority_need_no_key(world, tmp_path):
    _, env, listing = world
    result = run_script("breach_contact.py", "--incident", "INC-2026-01", "--operator", "dpo.jansen", "--reason",
                        "art. 33 notice", "--pseudonyms", str(listing), "--counts-only", env=env)
    assert result.returncode == 0 and text(result).splitlines() == [SUMMARY]
    assert records(env)[0]["action"] == "breach.count"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_eyes(*args: str, env: dict[str, str]) -> dict:
    result = run_script("four_eyes.py", *args, env=env)
    assert result.returncode == 0, text(result, "stderr")
    return json.loads(result.stdout)


def enrol_officers(tmp_path: Path, env: dict[str, str], officer_env: dict[str, str]) -> None:
    """The founding ceremony (anna, bram), then carla enrolled by anna and confirmed by bram."""
    for name in ("anna", "bram", "carla"):
        made = four_eyes("keygen", "--officer", name, "--out", str(tmp_path / f"{name}.key"), env=officer_env)
        assert made["proof"] == str(tmp_path / f"{name}.key.proof")
    statement = str(tmp_path / "founding.json")
    started = four_eyes("found", "--officer", "anna", "--key", str(tmp_path / "anna.key"), "--statement", statement,
                        "--cofounder", "bram", "--cofounder-key", str(tmp_path / "bram.key.pub"), env=officer_env)
    assert started["status"] == "signed" and started["signed_by"] == ["anna"]
    founded = four_eyes("found", "--officer", "bram", "--key", str(tmp_path / "bram.key"), "--statement", statement,
                        env=officer_env)
    assert founded["status"] == "founded" and founded["statement_sha256"] == started["statement_sha256"]
    again = run_script("four_eyes.py", "found", "--officer", "bram", "--key", str(tmp_path / "bram.key"),
                       "--statement", statement, env=officer_env)
    assert again.returncode == 1 and "already founded" in text(again, "stderr")
    carla = ["enrol", "--officer", "carla", "--public-key", str(tmp_path / "carla.key.pub"),
             "--proof", str(tmp_path / "carla.key.proof")]
    alone = run_script("four_eyes.py", *carla, "--by", "carla", "--key", str(tmp_path / "carla.key"), env=officer_env)
    assert alone.returncode == 1 and "nobody enrols themselves" in text(alone, "stderr")
    assert four_eyes(*carla, "--by", "anna", "--key", str(tmp_path / "anna.key"), env=officer_env)["status"] == "pending"
    assert four_eyes(*carla, "--by", "bram", "--key", str(tmp_path / "bram.key"), env=officer_env)["status"] == "active"
    listed = four_eyes("officers", env=env)["officers"]
    assert [(o["officer"], o["verified"], o["active"]) for o in listed] == [
        ("anna", True, True), ("bram", True, True), ("carla", True, True)]


def test_the_whole_procedure_with_four_eyes_and_notices(world, tmp_path, keys_dir):
    people, env, listing = world
    env = env | {"IDENTITY_FOUR_EYES_REQUIRED": "true"}
    officer_env = env | {"IDENTITY_OFFICER_KEY_PASSPHRASE": "officer secret"}
    enrol_officers(tmp_path, env, officer_env)

    args = base_args(tmp_path, keys_dir, listing)
    out = tmp_path / "contacts.csv"
    refused = run_script("breach_contact.py", *args, "--out", str(out), env=env)
    assert refused.returncode == 1 and "approval is required" in text(refused, "stderr") and not out.exists()

    filed = run_script("four_eyes.py", "request", "--officer", "anna", "--key", str(tmp_path / "anna.key"),
                       "--incident", "INC-2026-01", "--reason", "analytics bucket leaked", "--pseudonyms",
                       str(listing), env=officer_env)
    assert filed.returncode == 0, text(filed, "stderr")
    request_id = json.loads(filed.stdout)["request_id"]
    self_approved = run_script("four_eyes.py", "approve", "--officer", "anna", "--key", str(tmp_path / "anna.key"),
                               "--request", request_id, env=officer_env)
    assert self_approved.returncode == 1 and "own request" in text(self_approved, "stderr")
    approved = run_script("four_eyes.py", "approve", "--officer", "carla", "--key", str(tmp_path / "carla.key"),
                          "--request", request_id, "--pseudonyms", str(listing), env=officer_env)
    assert approved.returncode == 0 and json.loads(approved.stdout)["status"] == "approved"

    notice = tmp_path / "notice.json"
    notice.write_text(json.dumps(NOTICE))
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        smtp = {"IDENTITY_SMTP_HOST": "127.0.0.1", "IDENTITY_SMTP_PORT": str(controller.port),
                "IDENTITY_SMTP_SECURITY": "none", "IDENTITY_SMTP_FROM": "privacy@voorbeeld.nl"}
        notify = [*args, "--out", str(out), "--request", request_id, "--notify", "--notice", str(notice)]
        rehearsal = run_script("breach_contact.py", *notify, "--dry-run", env=env | smtp)
        assert rehearsal.returncode == 0, text(rehearsal, "stderr")
        assert inbox.messages == [] and "would_send=11" in text(rehearsal, "stderr")
        assert NOTICE["nl"]["measures"] in text(rehearsal, "stderr")
        assert not any(e in text(rehearsal, "stderr") for e in EMAILS)

        sent = run_script("breach_contact.py", *notify, env=env | smtp)
        assert sent.returncode == 0, text(sent, "stderr")
        assert text(sent).splitlines() == [SUMMARY] and "sent=11" in text(sent, "stderr")
        assert sorted(inbox.recipients()) == sorted(people.pseudonyms.values())
        again = run_script("breach_contact.py", *notify, env=env | smtp)
        assert again.returncode == 0 and "already_sent=11" in text(again, "stderr") and len(inbox.messages) == 11
    finally:
        controller.stop()

    other_run = run_script("breach_contact.py", *args, "--out", str(tmp_path / "second.csv"), "--request",
                           request_id, env=env)
    assert other_run.returncode == 1 and "already used" in text(other_run, "stderr")

    log = json.loads(run_script("audit.py", "show", "--incident", "INC-2026-01", env=env).stdout)["records"]
    kinds = [(r["action"], r["outcome"]) for r in log]
    assert ("four_eyes.request", "ok") in kinds and ("four_eyes.approve", "ok") in kinds
    assert kinds.count(("four_eyes.use", "ok")) == 1
    assert kinds.count(("breach.notify", "sent")) == 11
    assert "@example.org" not in json.dumps(log)
    assert run_script("audit.py", "verify", env=env).returncode == 0


def production_env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_ENV": "production", "IDENTITY_ISSUER": "https://id.example.test",
                  "IDENTITY_KEYS_PASSPHRASE": "pass", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
                  "IDENTITY_UPSTREAM_CLIENT_ID": "identity", "IDENTITY_UPSTREAM_CLIENT_SECRET": "secret"}


def test_production_refuses_to_resolve_with_four_eyes_switched_off(world, tmp_path, keys_dir):
    """The review's reproduction 4: IDENTITY_FOUR_EYES_REQUIRED=false in production."""
    _, env, listing = world
    out = tmp_path / "contacts.csv"
    result = run_script("breach_contact.py", *base_args(tmp_path, keys_dir, listing), "--out", str(out),
                        env=production_env(env) | {"IDENTITY_FOUR_EYES_REQUIRED": "false"})
    assert result.returncode != 0 and result.stdout == b"" and not out.exists()
    assert "IDENTITY_FOUR_EYES_REQUIRED" in text(result, "stderr")
    if result.returncode == 1:  # refused by the script (the configuration itself may refuse it first, exit 2)
        (record,) = records(env)
        assert record["outcome"] == "refused" and "production never resolves" in record["details"]["problem"]


def test_the_breach_script_audits_the_production_refusal(world, tmp_path, keys_dir, settings, monkeypatch):
    """The same refusal, in process, whatever the configuration loader does with that setting."""
    import dataclasses
    import importlib.util
    _, env, listing = world
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("breach_contact_script", ROOT / "scripts" / "breach_contact.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    production = dataclasses.replace(settings, env="production", four_eyes_required=False, keys_dir=keys_dir)
    store = SQLiteStore(env["IDENTITY_DB_URI"].removeprefix("sqlite:///"))
    args = script.parse_args([*base_args(tmp_path, keys_dir, listing), "--out", str(tmp_path / "contacts.csv")])
    try:
        with pytest.raises(script.CommandError, match="production never resolves"):
            script.resolve(production, store, signed_log(store), args)
    finally:
        store.close()
    (record,) = records(env)
    assert (record["action"], record["outcome"], record["actor"]) == ("breach.resolve", "refused", "dpo.jansen")
    assert not (tmp_path / "contacts.csv").exists()
