"""Discovery (RFC 8414 / OIDC Discovery): the public document is rebuilt at most every few seconds."""

from __future__ import annotations

from identity.oauth.metadata import REBUILD_SECONDS

from tests.conftest import API


def _scopes(oauth_client) -> list[str]:
    return oauth_client.get("/.well-known/openid-configuration").json["scopes_supported"]


def _register(oauth, scope: str) -> None:
    oauth.clients.register(name=f"Job {scope}", public=False, redirect_uris=[], grant_types=["client_credentials"],
                           scopes=[scope], audiences=[API])


def test_a_burst_of_discovery_requests_scans_the_clients_once(oauth_client, oauth, monkeypatch):
    scans = []
    original = oauth.clients.all

    def scanned():
        scans.append(1)
        return original()

    monkeypatch.setattr(oauth.clients, "all", scanned)
    for _ in range(50):
        assert oauth_client.get("/.well-known/openid-configuration").status_code == 200
        assert oauth_client.get("/.well-known/oauth-authorization-server").status_code == 200
    assert len(scans) == 1


def test_a_new_clients_scope_is_advertised_after_the_rebuild_interval(oauth_client, oauth, clock):
    assert "reports:write" not in _scopes(oauth_client)
    _register(oauth, "reports:write")
    assert "reports:write" not in _scopes(oauth_client)  # still the document built a moment ago
    clock.advance(REBUILD_SECONDS)
    assert "reports:write" in _scopes(oauth_client)


def test_a_clock_that_steps_back_rebuilds_rather_than_serving_an_old_document(oauth_client, oauth, clock):
    _scopes(oauth_client)
    _register(oauth, "audit:read")
    clock.advance(-3600)
    assert "audit:read" in _scopes(oauth_client)
