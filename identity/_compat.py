"""Every use of a dependency's private API, in one place, each with why (``tests/test_compat.py`` checks them).

A private name can change in any release without notice. Each entry below says what it reaches into, why
no public API does the job, and what breaks if it moves; ``tests/test_compat.py`` fails loudly (naming the
entry) when an upgrade changes the behaviour relied on, instead of leaving a silent change in production.
Nothing else in ``identity`` names a dependency's private attribute or module.

* ``sodium`` (PyNaCl's ``nacl._sodium``): the cffi handle to libsodium, for ``identity.breach.opening``.
* ``init_limiter_without_request_hooks`` (Flask-Limiter's ``app.extensions["limiter"]`` set).
* ``drop_gunicorn_server_header`` (gunicorn's ``gunicorn.http.wsgi.Response.default_headers``).
* ``forget_server_metadata`` (Authlib's ``_loaded_at`` member of a client's ``server_metadata``).
* ``WERKZEUG_FORM_ERRORS`` (Werkzeug's ``werkzeug.url_quote`` codec error handler).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, MutableMapping

from nacl import _sodium as sodium  # re-exported: sodium.ffi, sodium.lib

if TYPE_CHECKING:  # importing this module loads neither Flask nor Werkzeug (the breach path imports it)
    from flask import Flask
    from flask_limiter import Limiter

__all__ = ["WERKZEUG_FORM_ERRORS", "drop_gunicorn_server_header", "forget_server_metadata",
           "init_limiter_without_request_hooks", "sodium"]

# -- PyNaCl ---------------------------------------------------------------------------------------
# ``sodium.ffi`` and ``sodium.lib``: PyNaCl's own cffi handle to the libsodium it ships. The breach run opens
# up to a million sealed boxes; PyNaCl's public ``crypto_box_seal_open`` checks its arguments, allocates a
# fresh buffer and copies the plaintext on every call (about a fifth of an open on top of the key
# agreement), and a buffer it allocates cannot be wiped. Calling ``lib.crypto_box_seal_open`` into one
# buffer per batch, wiped with ``lib.sodium_memzero``, avoids both. PyNaCl is pinned (requirements.txt).

# -- Flask-Limiter --------------------------------------------------------------------------------

LIMITER_EXTENSION = "limiter"  # Flask-Limiter's key in app.extensions: the set of limiters initialised on the app


def init_limiter_without_request_hooks(limiter: Limiter, app: Flask) -> None:
    """``limiter.init_app(app)`` without the before/after/teardown request hooks it would add.

    ``init_app`` adds its three hooks unless ``app.extensions["limiter"]`` already holds the limiter. This
    service needs none of them (limits are view decorators and the client-authentication budget), and any
    ``before_request`` hook would switch off the token endpoint's fast path (``identity.web.token_fast_path``).
    Flask-Limiter has no public switch for the hooks, so the limiter is listed first. The per-request state
    the teardown hook would reset lives on the request context, which ends with the request anyway.
    """
    app.extensions.setdefault(LIMITER_EXTENSION, set()).add(limiter)
    limiter.init_app(app)


# -- gunicorn -------------------------------------------------------------------------------------

_PATCHED = "_identity_no_server_header"


def drop_gunicorn_server_header() -> None:
    """Under gunicorn, send no ``Server`` header at all (it would name the server software).

    gunicorn writes ``Server: gunicorn`` itself in ``gunicorn.http.wsgi.Response.default_headers``, outside
    the WSGI app, and has no setting for it: that method is wrapped once per process to leave the line out
    (a no-op when gunicorn is not serving us).
    """
    if "gunicorn.arbiter" not in sys.modules:
        return  # not served by gunicorn
    module = importlib.import_module("gunicorn.http.wsgi")  # not yet imported when the app is preloaded
    response_class = getattr(module, "Response", None)
    if response_class is None or getattr(response_class, _PATCHED, False):
        return
    original = response_class.default_headers

    def default_headers(self: Any) -> list[str]:
        return [line for line in original(self) if not line.lower().startswith("server:")]

    response_class.default_headers = default_headers
    setattr(response_class, _PATCHED, True)


# -- Authlib --------------------------------------------------------------------------------------

AUTHLIB_LOADED_AT = "_loaded_at"


def forget_server_metadata(server_metadata: MutableMapping[str, Any]) -> None:
    """Make an Authlib OAuth client fetch its discovery document again at its next ``load_server_metadata``.

    Authlib fetches the document once and marks it loaded with a ``_loaded_at`` member; it has no public
    way to refetch. Dropping the mark after the upstream IdP served a document we refuse lets a fixed one
    be read without a restart.
    """
    server_metadata.pop(AUTHLIB_LOADED_AT, None)


# -- Werkzeug -------------------------------------------------------------------------------------

# The codec error handler Werkzeug's form parser passes to ``urllib.parse.parse_qsl`` (``werkzeug.formparser``;
# registered when ``werkzeug.urls`` is imported, which Flask does): a byte that is not UTF-8 after
# percent-decoding stays percent-encoded. The token fast path parses the form with it so that its form is
# exactly ``request.form`` for every body; Werkzeug does not export a parser for an already-read body.
WERKZEUG_FORM_ERRORS = "werkzeug.url_quote"
