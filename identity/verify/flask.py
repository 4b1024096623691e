"""Flask integration: ``@require_token(scope=...)`` for a downstream service's routes.

    from identity.verify.flask import init_app, require_token, current_token

    init_app(app, verifier, realm="records")

    @app.post("/records")
    @require_token(scope="records:write")
    def add_record():
        pseudonym = current_token().pseudonym        # also flask.g.access_token

Answers follow RFC 6750 §3: 401 with ``WWW-Authenticate: Bearer realm="…"`` when no token was
sent, 401 ``error="invalid_token"`` for any token that fails (one answer for every reason; the
reason goes to the log), 403 ``error="insufficient_scope"`` naming the scope the route needs,
400 ``error="invalid_request"`` for a malformed ``Authorization`` header, 503 when the issuer's keys
cannot be fetched. Only the ``Authorization`` header is read (RFC 6750 §2.1); never query strings.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar, cast, overload

from flask import Flask, Response, current_app, g, jsonify, request

from .claims import AccessToken
from .errors import ConfigurationError, InsufficientScope, InvalidToken, IssuerUnavailable
from .verifier import TokenVerifier, scope_set

log = logging.getLogger(__name__)

EXTENSION = "identity.verify"
F = TypeVar("F", bound=Callable[..., Any])
#: RFC 6750 §2.1 b64token
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REALM = re.compile(r"[\x20-\x7e]{1,64}")
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class _Config:
    verifier: TokenVerifier
    realm: str


def init_app(app: Flask, verifier: TokenVerifier, *, realm: str = "api") -> None:
    """Attach ``verifier`` to ``app`` for ``require_token``."""
    if not _REALM.fullmatch(realm) or '"' in realm or "\\" in realm:
        raise ConfigurationError("realm must be short printable ASCII without quotes or backslashes")
    app.extensions[EXTENSION] = _Config(verifier=verifier, realm=realm)


def current_token() -> AccessToken:
    """The verified token of the current request (inside a ``require_token`` route)."""
    token = g.get("access_token")
    if not isinstance(token, AccessToken):
        raise RuntimeError("current_token() is only available inside a @require_token route")
    return token


class _MissingToken(Exception):
    pass


class _MalformedHeader(Exception):
    pass


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if not header:
        raise _MissingToken()
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _MissingToken()  # another scheme: to us, no bearer credentials at all
    value = value.strip(" ")
    if not _B64TOKEN.fullmatch(value):
        raise _MalformedHeader()
    return value


def _challenge(realm: str, **params: str) -> str:
    parts = [f'realm="{realm}"'] + [f'{name}="{value}"' for name, value in params.items()]
    return "Bearer " + ", ".join(parts)


def _error(status: int, body: dict[str, str], challenge: str | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


def _authorize(config: _Config, required: frozenset[str], introspect: bool) -> Response | None:
    """Verify the request's token and put it on ``g``; an error response when it must be refused."""
    try:
        token = config.verifier.verify(bearer_token(request.headers.get("Authorization")), introspect=introspect)
        TokenVerifier.require_scope(token, required)
    except _MissingToken:
        return _error(401, {"error": "unauthorized"}, _challenge(config.realm))
    except _MalformedHeader:
        return _error(400, {"error": "invalid_request"}, _challenge(config.realm, error="invalid_request"))
    except InvalidToken as exc:
        log.info("access token refused: %s (%s)", type(exc).__name__, exc)
        return _error(401, {"error": "invalid_token"}, _challenge(config.realm, error="invalid_token"))
    except InsufficientScope:
        scope = " ".join(sorted(required))
        return _error(
            403, {"error": "insufficient_scope", "scope": scope},
            _challenge(config.realm, error="insufficient_scope", scope=scope),
        )
    except IssuerUnavailable as exc:
        log.warning("access token not verifiable now: %s", exc)
        response = _error(503, {"error": "temporarily_unavailable"})
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    g.access_token = token
    return None


@overload
def require_token(scope: F) -> F: ...


@overload
def require_token(
    scope: str | Iterable[str] | None = None, *, introspect: bool = False
) -> Callable[[F], F]: ...


def require_token(scope: Any = None, *, introspect: bool = False) -> Any:
    """Protect a view: a valid access token (with every scope in ``scope``) or an RFC 6750 error.

    :param scope: ``"a b"`` or ``["a", "b"]``; all are required
    :param introspect: also ask the issuer whether the token was revoked (one HTTP call per request)
    """
    if callable(scope):  # used bare: @require_token
        return require_token()(scope)
    required = scope_set(scope)
    if any('"' in s or "\\" in s for s in required):
        raise ConfigurationError("scope names must not contain quotes or backslashes (RFC 6749 §3.3)")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            config = current_app.extensions.get(EXTENSION)
            if not isinstance(config, _Config):
                raise ConfigurationError("call identity.verify.flask.init_app(app, verifier) first")
            refused = _authorize(config, required, introspect)
            if refused is not None:
                return refused
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
