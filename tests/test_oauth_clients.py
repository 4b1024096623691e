"""Client registration rules and registrations stored by earlier releases (``identity.oauth.clients``)."""

from __future__ import annotations

import jwt
import pytest

from identity.oauth.clients import CLIENTS, ClientRegistrationError
from tests.conftest import API
from tests.oauth_helpers import pkce_pair, query_of

IDN_REDIRECT = "https://b\u00fccher.example/callback"  # bücher.example
A_LABEL_REDIRECT = "https://xn--bcher-kva.example/callback"  # the same host, as DNS spells it


def register(oauth, redirect_uri: str, **extra):
    client, _ = oauth.clients.register(name="B\u00fccher app", public=True, redirect_uris=[redirect_uri],
                                       grant_types=None, scopes=["openid", "records:read"], audiences=[API], **extra)
    return client


def id_token_subject(oauth_client, client, redirect_uri: str) -> str:
    """The person's ``sub`` in the ID token ``client`` gets from a code flow to ``redirect_uri``."""
    verifier, challenge = pkce_pair()
    response = oauth_client.get("/authorize", query_string={
        "response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid records:read",
        "resource": API})
    code = query_of(response.headers["Location"])["code"]
    answer = oauth_client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "client_id": client.client_id, "redirect_uri": redirect_uri,
                                               "code_verifier": verifier})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return str(jwt.decode(answer.json["id_token"], options={"verify_signature": False})["sub"])


@pytest.mark.parametrize("field", ["redirect_uris", "post_logout_redirect_uris"])
def test_a_non_ascii_redirect_host_is_refused_with_the_form_to_register(oauth, field):
    uris = {"redirect_uris": [A_LABEL_REDIRECT], "post_logout_redirect_uris": [A_LABEL_REDIRECT + "/bye"]}
    uris[field] = [IDN_REDIRECT]
    with pytest.raises(ClientRegistrationError, match="host must be ASCII.*xn--bcher-kva.example"):
        oauth.clients.register(name="B\u00fccher app", public=True, grant_types=None, scopes=["openid"],
                               audiences=[API], **uris)
    assert oauth.clients.all() == []


def test_the_a_label_form_registers_with_its_host_as_sector(oauth):
    assert register(oauth, A_LABEL_REDIRECT).sector == "xn--bcher-kva.example"


@pytest.mark.usefixtures("token_path")
@pytest.mark.parametrize("stored_sector", ["b\u00fccher.example", None])  # None: stored before sectors were
def test_a_client_stored_with_a_non_ascii_redirect_host_gets_its_tokens_in_the_a_label_sector(
        oauth, oauth_client, services, stored_sector):
    """An earlier release accepted the host and stored it (its sector too): every code exchange then failed
    (500), so no subject exists in that sector. The client now works, in the sector its host's A-label form
    gives: the one a registration of that form gets, so both see one ``sub`` per person (OIDC Core §8.1)."""
    earlier = register(oauth, A_LABEL_REDIRECT)
    services.store.update(CLIENTS, {"client_id": earlier.client_id},
                          {"redirect_uris": [IDN_REDIRECT], "sector": stored_sector})
    stored = oauth.clients.get(earlier.client_id)
    current = register(oauth, A_LABEL_REDIRECT)
    assert stored is not None
    assert id_token_subject(oauth_client, stored, IDN_REDIRECT) == id_token_subject(oauth_client, current,
                                                                                     A_LABEL_REDIRECT)
    assert stored.sector == current.sector == "xn--bcher-kva.example"
