"""Exporting the audit chain's heads: the setting, the sinks (file, syslog), reading heads back, and what a
failing sink means for the service (503, never a silent gap)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from pathlib import Path

import pytest

from identity.audit import HeadsUnavailable, open_audit_log
from identity.audit_heads import (
    AllHeads,
    ExportedHead,
    FileHeads,
    SyslogHeads,
    UnreadableLine,
    head_line,
    heads_sink,
    parse_heads_spec,
    read_heads,
)
from identity.config import ConfigError, load_settings
from identity.oauth.self_audience import self_audience_uri
from identity.services import build_services
from tests.audit_support import exported_heads
from tests.conftest import REDIRECT_URI, production_settings
from tests.oauth_helpers import pkce_pair, query_of

HASH = "ab" * 32


# -- the setting ---------------------------------------------------------------------------------------


def test_the_setting_names_files_syslog_or_none():
    assert parse_heads_spec("file:///var/lib/identity/heads.jsonl") == (FileHeads(Path("/var/lib/identity/heads.jsonl")),)
    assert parse_heads_spec("syslog:") == (SyslogHeads("/dev/log"),)
    assert parse_heads_spec("syslog:/run/systemd/journal/dev-log") == (SyslogHeads("/run/systemd/journal/dev-log"),)
    assert parse_heads_spec("file:///a/h, syslog:") == (FileHeads(Path("/a/h")), SyslogHeads("/dev/log"))
    assert parse_heads_spec("none") == ()


@pytest.mark.parametrize("spec", ["file://relative/h", "file:///dir/", "/abs/path", "s3://bucket/h", "none,syslog:",
                                  "syslog://host:514"])
def test_a_bad_setting_stops_the_start_naming_the_variable(spec: str):
    with pytest.raises(ConfigError) as caught:
        load_settings({"IDENTITY_AUDIT_HEADS": spec})
    assert any(p.startswith("IDENTITY_AUDIT_HEADS") for p in caught.value.problems)


def test_production_refuses_to_export_no_heads(settings, tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        load_settings({"IDENTITY_ENV": "production", "IDENTITY_AUDIT_HEADS": "none"})
    assert any("IDENTITY_AUDIT_HEADS=none is refused in production" in p for p in caught.value.problems)
    assert load_settings({"IDENTITY_AUDIT_HEADS": "none"}).audit_heads == "none"  # development may
    with pytest.raises(ConfigError, match="IDENTITY_AUDIT_HEADS=none is refused in production"):
        build_services(production_settings(settings, tmp_path, audit_heads="none"))


def test_by_default_heads_go_beside_an_embedded_database_and_to_syslog_with_mongodb(tmp_path: Path):
    assert heads_sink(None, f"sqlite:///{tmp_path}/identity.sqlite3") == \
        FileHeads(tmp_path / "identity.sqlite3.audit-heads.jsonl")
    assert heads_sink(None, "mongodb://db.example.org/identity") == SyslogHeads("/dev/log")
    assert heads_sink("none", f"sqlite:///{tmp_path}/x.sqlite3") is None
    assert isinstance(heads_sink("file:///a/h,syslog:", "mongodb://db/identity"), AllHeads)


def test_the_service_exports_heads_beside_its_database_out_of_the_box(services, settings, tmp_path: Path):
    services.audit.append(actor="ops", action="test")
    heads = exported_heads(tmp_path / "identity.sqlite3.audit-heads.jsonl")
    assert [(h.seq, h.hash) for h in heads] == [(1, services.audit.head()["hash"])]
    assert services.audit.signer.signer_id.startswith("service:")


def test_a_sink_that_cannot_take_heads_at_start_is_logged_not_fatal(settings, tmp_path: Path, caplog):
    """Like the store, the sink may recover without a restart; audited actions answer 503 meanwhile."""
    (tmp_path / "not-a-dir").write_text("")
    with caplog.at_level(logging.WARNING):
        svc = build_services(dataclasses.replace(settings, audit_heads=f"file://{tmp_path}/not-a-dir/h"))
    assert "cannot take heads" in caplog.text and "answer 503" in caplog.text
    with pytest.raises(HeadsUnavailable):
        svc.audit.append(actor="ops", action="test")


def test_scripts_refuse_before_acting_when_the_sink_cannot_take_heads(settings, sqlite_store, tmp_path: Path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(HeadsUnavailable, match="IDENTITY_AUDIT_HEADS"):
        open_audit_log(dataclasses.replace(settings, audit_heads=f"file://{tmp_path}/not-a-dir/h"), sqlite_store)


# -- syslog ---------------------------------------------------------------------------------------------


@pytest.fixture
def syslog_socket(tmp_path: Path):
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    yield path, server
    server.close()


def test_syslog_gets_one_tagged_message_per_head(syslog_socket):
    path, server = syslog_socket
    line = head_line({"seq": 7, "hash": HASH, "at": 1.5, "signer": "service:x"})
    SyslogHeads(path).export(line)
    message = server.recv(4096).decode()
    assert message == f"<134>identity-audit[{os.getpid()}]: " + line.decode().rstrip("\n")


def test_syslog_that_is_not_listening_fails_the_export(tmp_path: Path):
    with pytest.raises(OSError):
        SyslogHeads(str(tmp_path / "absent.sock")).export(b"{}\n")
    with pytest.raises(OSError):
        SyslogHeads(str(tmp_path / "absent.sock")).check()


# -- reading heads back ------------------------------------------------------------------------------------


def test_heads_are_read_from_plain_syslog_and_journal_exports(tmp_path: Path):
    line = head_line({"seq": 3, "hash": HASH, "at": 2.0, "signer": "officer:anna"}).decode().strip()
    path = tmp_path / "heads.log"
    path.write_text(
        f"{line}\n"
        f"Nov  3 12:00:00 host identity-audit[123]: {line}\n"
        "\n"
        f'{{"at":1.0,"hash":"tor{line}\n'  # a torn write followed by a whole line: the whole one counts
        "something else\n"
        '{"at":1.0,"hash":"short","seq":1,"signer":null}\n'
    )
    heads = list(read_heads([path, tmp_path / "missing.log"]))
    assert heads[:3] == [ExportedHead(3, HASH, 2.0, "officer:anna", f"{path}:{n}") for n in (1, 2, 4)]
    assert heads[3:] == [UnreadableLine(f"{path}:5", "is not an audit head"),
                         UnreadableLine(f"{path}:6", "is not an audit head"),
                         UnreadableLine(str(tmp_path / "missing.log"), "does not exist", missing_file=True)]


# -- what a failing sink means for a request -----------------------------------------------------------------


@pytest.fixture
def self_app(oauth, settings):
    client, _ = oauth.clients.register(name="Account app", public=True, redirect_uris=[REDIRECT_URI],
                                       grant_types=None, scopes=["identity:self"],
                                       audiences=[self_audience_uri(settings.issuer)])
    return client


def self_token(oauth_client, app_client) -> str:
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "identity:self"})
    code = query_of(response.headers["Location"])["code"]
    tokens = oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "client_id": app_client.client_id, "redirect_uri": REDIRECT_URI,
                                               "code_verifier": verifier})
    return tokens.json["access_token"]


def test_an_audited_request_whose_head_cannot_be_exported_is_a_503(oauth_app, oauth_client, self_app, tmp_path):
    token = self_token(oauth_client, self_app)
    heads = tmp_path / "identity.sqlite3.audit-heads.jsonl"
    heads.unlink(missing_ok=True)
    heads.symlink_to(tmp_path / "elsewhere")  # O_NOFOLLOW: never written through a planted link
    response = oauth_client.delete("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and response.json["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] and "audit" not in response.get_data(as_text=True)
    assert not (tmp_path / "elsewhere").exists()
