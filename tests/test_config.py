"""Settings from the environment: defaults, every problem at once, production refusals, redaction."""

from __future__ import annotations

import pytest

from identity.config import ConfigError, load_settings


def test_defaults_run_development_on_the_embedded_store():
    settings = load_settings({})
    assert settings.env == "development"
    assert settings.db_uri == "sqlite:///var/identity.sqlite3"
    assert str(settings.keys_dir) == "keys"
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.access_token_ttl == 600


def test_every_problem_is_reported_together_naming_its_variable():
    with pytest.raises(ConfigError) as info:
        load_settings({
            "IDENTITY_ENV": "production",
            "IDENTITY_ISSUER": "http://id.example.org",
            "IDENTITY_DB_URI": "postgres://x",
            "IDENTITY_ACCESS_TOKEN_TTL": "forever",
        })
    text = str(info.value)
    for name in ("IDENTITY_ISSUER", "IDENTITY_DB_URI", "IDENTITY_KEYS_PASSPHRASE", "IDENTITY_ACCESS_TOKEN_TTL",
                 "IDENTITY_UPSTREAM_"):
        assert name in text
    assert len(info.value.problems) >= 5


@pytest.mark.parametrize("issuer", ["not a url", "ftp://x", "https://id.example.org?x=1", "https://id.example.org#f"])
def test_bad_issuers_are_refused(issuer: str):
    with pytest.raises(ConfigError, match="IDENTITY_ISSUER"):
        load_settings({"IDENTITY_ISSUER": issuer})


def test_production_requires_https_issuer_and_passphrase():
    base = {"IDENTITY_ENV": "production", "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
            "IDENTITY_UPSTREAM_CLIENT_ID": "c", "IDENTITY_UPSTREAM_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigError, match="https"):
        load_settings({**base, "IDENTITY_ISSUER": "http://id.example.org", "IDENTITY_KEYS_PASSPHRASE": "p"})
    with pytest.raises(ConfigError, match="IDENTITY_KEYS_PASSPHRASE"):
        load_settings({**base, "IDENTITY_ISSUER": "https://id.example.org"})
    ok = load_settings({**base, "IDENTITY_ISSUER": "https://id.example.org/", "IDENTITY_KEYS_PASSPHRASE": "p"})
    assert ok.is_production and ok.issuer == "https://id.example.org"


def test_unknown_environment_name_is_refused():
    with pytest.raises(ConfigError, match="IDENTITY_ENV"):
        load_settings({"IDENTITY_ENV": "staging"})


def test_secrets_are_redacted_when_printed():
    settings = load_settings({
        "IDENTITY_KEYS_PASSPHRASE": "hunter2-passphrase",
        "IDENTITY_DB_URI": "mongodb://user:dbpassword@db.example.org/identity",
        "IDENTITY_UPSTREAM_ISSUER": "https://idp.example.org",
        "IDENTITY_UPSTREAM_CLIENT_ID": "client",
        "IDENTITY_UPSTREAM_CLIENT_SECRET": "upstream-secret-value",
    })
    shown = repr(settings) + repr(settings.redacted())
    for secret in ("hunter2-passphrase", "dbpassword", "upstream-secret-value"):
        assert secret not in shown
    assert settings.redacted()["keys_passphrase"] == "<set>"


def test_trusted_proxies_are_none_by_default_a_hop_count_or_networks():
    assert not load_settings({}).trusted_proxies
    assert load_settings({"IDENTITY_TRUSTED_PROXIES": "2"}).trusted_proxies.hops == 2
    listed = load_settings({"IDENTITY_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.7"})
    assert str(listed.trusted_proxies) == "10.0.0.0/8,192.168.1.7/32"
    assert listed.redacted()["trusted_proxies"] == "10.0.0.0/8,192.168.1.7/32"
    for bad in ("proxy.internal", "10.0.0.1/8", "0.0.0.0/0", "2,10.0.0.0/8"):
        with pytest.raises(ConfigError, match="IDENTITY_TRUSTED_PROXIES") as info:
            load_settings({"IDENTITY_TRUSTED_PROXIES": bad})
        assert len(info.value.problems) == 1
