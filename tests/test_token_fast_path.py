"""The token fast path's own rules: its JSON is the app's, byte for byte; it steps aside for what it cannot
reproduce. (The whole token-endpoint suite runs through both paths: ``token_path`` in ``tests/conftest.py``.)"""

from __future__ import annotations

import pytest

from identity.web.token_fast_path import TokenFastPath, find_token_fast_path
from tests.conftest import API
from tests.lookup_support import present
from tests.test_oauth_flow import basic

TOKEN = "eyJ" + "a-b_c." * 200
RESULTS = {
    "a token response": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 600, "scope": "records:read"},
    "every token": {"access_token": TOKEN, "id_token": TOKEN[:90], "refresh_token": "g.r", "expires_in": 600},
    "quotes, backslashes, controls": {"scope": 'a"b\\c\n\t\x01', "n": 1},
    "non-ASCII": {"scope": "café ünïcode ✓", "x": "\u2028"},
    "DEL and beyond": {"scope": "a\x7fb", "y": "\x80"},
    "empty": {},
    "tokens that need escaping": {"access_token": 'a"b', "id_token": "a\\b", "refresh_token": "a\nb"},
    "tokens JSON would change": {"access_token": "a\x7fb", "id_token": "é", "refresh_token": "\x00"},
    "an empty token, a missing one, one not text": {"access_token": "", "refresh_token": None, "id_token": 3},
    "the member's text elsewhere": {"access_token": TOKEN, "scope": '"access_token":""', "x": '"access_token":"'},
    "a nested member of the same name": {"a": {"access_token": ""}, "access_token": TOKEN},
    "a list": {"access_token": TOKEN, "b": ["access_token", ""]},
}


@pytest.fixture
def fast_path(oauth_app) -> TokenFastPath:
    layer = find_token_fast_path(oauth_app.wsgi_app)
    assert layer is not None
    layer.enabled = layer._decide()
    assert layer.enabled
    return layer


@pytest.mark.parametrize("case", sorted(RESULTS))
def test_its_json_is_the_apps_json_byte_for_byte(oauth_app, fast_path, case):
    assert fast_path.encode(RESULTS[case]) == oauth_app.json.response(RESULTS[case]).get_data()


def test_a_request_hook_switches_it_off_and_flask_answers(oauth_app, oauth):
    hooked: list[str] = []

    def hook():
        hooked.append("ran")

    oauth_app.before_request(hook)
    rs, secret = oauth.clients.register(name="Backend", public=False, redirect_uris=[], grant_types=None,
                                        scopes=["records:read"], audiences=[API])
    answer = oauth_app.test_client().post("/token", data={"grant_type": "client_credentials"},
                                          headers=basic(rs.client_id, secret))
    assert answer.status_code == 200 and hooked == ["ran"]  # Flask ran the view, and the app's hook with it
    assert present(find_token_fast_path(oauth_app.wsgi_app)).enabled is False
