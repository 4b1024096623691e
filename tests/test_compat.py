"""identity._compat: each private API of a dependency the service relies on still behaves as relied on.

One test (or two) per entry; a failure here after an upgrade names the entry to revisit before anything
breaks silently in production. The last test keeps every such use inside identity/_compat.py.
"""

from __future__ import annotations

import codecs
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from flask_limiter import Limiter
from nacl import bindings
from nacl.public import PrivateKey, SealedBox
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

import identity
from identity import _compat

# -- PyNaCl: nacl._sodium -------------------------------------------------------------------------

def test_pynacls_cffi_handle_opens_a_sealed_box_into_a_buffer_we_wipe():
    ffi, lib = _compat.sodium.ffi, _compat.sodium.lib
    key = PrivateKey.generate()
    sealed = SealedBox(key.public_key).encrypt(b"someone@example.org")
    public, private = bytes(key.public_key), bytes(key)
    buffer = ffi.new("unsigned char[]", 64)
    assert lib.crypto_box_seal_open(buffer, sealed, len(sealed), public, private) == 0
    size = len(sealed) - bindings.crypto_box_SEALBYTES
    assert ffi.buffer(buffer, size)[:] == b"someone@example.org" == bindings.crypto_box_seal_open(sealed, public,
                                                                                                  private)
    assert lib.crypto_box_seal_open(buffer, sealed[:-1] + b"x", len(sealed), public, private) != 0
    lib.sodium_memzero(buffer, 64)
    assert ffi.buffer(buffer, 64)[:] == bytes(64)


# -- Flask-Limiter: the app.extensions["limiter"] set ---------------------------------------------

def limited(listed_first: bool) -> tuple[Flask, Limiter]:
    app = Flask("compat")
    limiter = Limiter(lambda: "one address", storage_uri="memory://", strategy="fixed-window")
    if listed_first:
        _compat.init_limiter_without_request_hooks(limiter, app)
    else:
        limiter.init_app(app)

    @app.get("/limited")
    @limiter.limit("2 per minute")
    def view() -> str:
        return "ok"

    return app, limiter


def hooks(app: Flask) -> list[object]:
    return [*app.before_request_funcs.get(None, ()), *app.after_request_funcs.get(None, ()),
            *app.teardown_request_funcs.get(None, ())]


def test_flask_limiter_adds_request_hooks_unless_the_limiter_is_listed_first():
    plain, _ = limited(listed_first=False)
    assert len(hooks(plain)) == 3, "Flask-Limiter no longer adds its three hooks: revisit _compat"
    app, limiter = limited(listed_first=True)
    assert hooks(app) == [] and limiter.initialized
    assert app.extensions[_compat.LIMITER_EXTENSION] == {limiter}


def test_a_limiter_without_request_hooks_still_enforces_its_view_limits_request_after_request():
    app, _ = limited(listed_first=True)
    client = app.test_client()
    assert [client.get("/limited").status_code for _ in range(3)] == [200, 200, 429]


# -- gunicorn: Response.default_headers -----------------------------------------------------------

@pytest.fixture
def gunicorn_response(monkeypatch):
    """A gunicorn response as a sync worker makes it, "served by gunicorn"; all is restored after the test."""
    from gunicorn.config import Config
    from gunicorn.http import wsgi

    monkeypatch.setitem(sys.modules, "gunicorn.arbiter", ModuleType("gunicorn.arbiter"))  # what it looks for
    monkeypatch.setattr(wsgi.Response, "default_headers", wsgi.Response.default_headers)
    monkeypatch.setattr(wsgi.Response, "_identity_no_server_header", False, raising=False)
    request = SimpleNamespace(version=(1, 1), method="GET", should_close=lambda: False)
    response = wsgi.Response(request, sock=None, cfg=Config())
    response.status, response.status_code, response.response_length = "200 OK", 200, 2
    return response


def test_gunicorn_writes_its_server_banner_in_default_headers(gunicorn_response):
    lines = gunicorn_response.default_headers()
    assert "Server: gunicorn\r\n" in lines, "gunicorn moved its Server header: revisit _compat"


def test_gunicorn_sends_no_server_header_once_adjusted_and_the_rest_unchanged(gunicorn_response):
    before = gunicorn_response.default_headers()
    _compat.drop_gunicorn_server_header()
    _compat.drop_gunicorn_server_header()  # once per process: a second call wraps nothing again
    after = gunicorn_response.default_headers()
    assert not any(line.lower().startswith("server:") for line in after)
    assert after[0] == "HTTP/1.1 200 OK\r\n" and [line for line in before if not line.startswith("Server:")
                                                  and not line.startswith("Date:")] == \
        [line for line in after if not line.startswith("Date:")]


def test_the_gunicorn_adjustment_is_a_no_op_without_gunicorn(monkeypatch):
    from gunicorn.http import wsgi

    monkeypatch.delitem(sys.modules, "gunicorn.arbiter", raising=False)
    original = wsgi.Response.default_headers
    _compat.drop_gunicorn_server_header()
    assert wsgi.Response.default_headers is original


# -- Authlib: server_metadata["_loaded_at"] --------------------------------------------------------

def test_authlib_fetches_discovery_once_and_again_once_forgotten(monkeypatch):
    from authlib.integrations.flask_client import OAuth
    from authlib.integrations.requests_client import OAuth2Session

    fetched: list[str] = []

    def request(self, method, url, **kwargs):
        fetched.append(url)
        return SimpleNamespace(raise_for_status=lambda: None, json=lambda: {"issuer": f"https://idp/{len(fetched)}"})

    monkeypatch.setattr(OAuth2Session, "request", request)
    client = OAuth(Flask("compat")).register("idp", client_id="c", client_secret="s",
                                             server_metadata_url="https://idp/.well-known/openid-configuration")
    assert client.load_server_metadata()["issuer"] == "https://idp/1"
    assert _compat.AUTHLIB_LOADED_AT in client.server_metadata, "Authlib renamed its loaded mark: revisit _compat"
    assert client.load_server_metadata()["issuer"] == "https://idp/1" and len(fetched) == 1
    _compat.forget_server_metadata(client.server_metadata)
    assert client.load_server_metadata()["issuer"] == "https://idp/2" and len(fetched) == 2


# -- Werkzeug: the "werkzeug.url_quote" codec error handler ----------------------------------------

BODIES = [b"a=1&b=2", b"a=%FF%FE&b=caf%C3%A9", b"a=%ZZ&b=%&c=+x+", b"a=%C3&b=%E2%82", b"=&a&&b=", b"k%FF=v"]


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_paths_form_parser_is_werkzeugs(body):
    codecs.lookup_error(_compat.WERKZEUG_FORM_ERRORS)  # registered (LookupError otherwise)
    ours = dict(parse_qsl(body.decode(), keep_blank_values=True, errors=_compat.WERKZEUG_FORM_ERRORS))
    environ = EnvironBuilder(method="POST", data=body, content_type="application/x-www-form-urlencoded").get_environ()
    assert ours == Request(environ).form.to_dict()


# -- nowhere else ----------------------------------------------------------------------------------

PRIVATE_USES = [
    r"^\s*(from|import)\s+(?!identity\b)[A-Za-z]\w*(\.\w+)*\._[a-z]",  # a dependency's private module
    r"_loaded_at|werkzeug\.url_quote|default_headers|extensions\.setdefault\(\"limiter\"|\._content\b",
]


def test_no_module_but_compat_reaches_into_a_dependency():
    root = Path(identity.__file__).parent
    found = [f"{path.relative_to(root)}:{number}: {line.strip()}"
             for path in sorted(root.rglob("*.py")) if path.name != "_compat.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if not line.lstrip().startswith("#") and any(re.search(p, line) for p in PRIVATE_USES)]
    assert found == []
