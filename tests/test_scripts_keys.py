"""``scripts/keys.py`` as an operator runs it: JSON on stdout, diagnostics on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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

    rotated = json.loads(run_keys("rotate", env=env).stdout)
    assert sorted(k["state"] for k in rotated["keys"]) == ["active", "next"]
    listed = json.loads(run_keys("list", env=env).stdout)
    assert listed["keys"] == rotated["keys"]


def test_production_init_needs_both_passphrases_and_refuses_development(tmp_path: Path):
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_ENV": "production",
           "IDENTITY_ISSUER": "https://id.example.org", "IDENTITY_KEYS_PASSPHRASE": "p",
           "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org", "IDENTITY_UPSTREAM_CLIENT_ID": "c",
           "IDENTITY_UPSTREAM_CLIENT_SECRET": "s"}
    assert run_keys("init", "--development", env=env).returncode == 1
    refused = run_keys("init", env=env)
    assert refused.returncode == 1 and "IDENTITY_DPO_KEY_PASSPHRASE" in refused.stderr
    ok = run_keys("init", env=env | {"IDENTITY_DPO_KEY_PASSPHRASE": "d"})
    assert ok.returncode == 0 and json.loads(ok.stdout)["encrypted"] is True


def test_rotate_of_encrypted_keys_without_passphrase_is_refused(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_KEYS_PASSPHRASE": "p", "IDENTITY_DB_URI": db}
    assert run_keys("init", env=env).returncode == 0
    refused = run_keys("rotate", env={"IDENTITY_KEYS_DIR": str(tmp_path / "k"), "IDENTITY_DB_URI": db})
    assert refused.returncode == 1 and "IDENTITY_KEYS_PASSPHRASE" in refused.stderr


def test_help_on_each_command():
    for command in ("init", "rotate", "list"):
        assert run_keys(command, "--help", env={}).returncode == 0
