"""The authorization endpoint's logic (RFC 6749 §4.1, RFC 7636, RFC 8707, RFC 9207), without Flask.

``validate`` checks an app's request in a fixed order: the client and its redirect URI first (a
failure there is an error *page*, never a redirect), then everything else (a failure is an OAuth
error *redirect* to the verified URI). ``park`` keeps the request server side while the person logs
in upstream; ``complete`` turns a verified e-mail into a pseudonym and a one-time code.

Only apps' logins end here. The service's own sign-ins (the e-mail change, the account page) are
``identity.signins``'s: they are held in the same store records (``hold``) and completed there.

A third-party client's code waits for the person's consent (``identity.oauth.consent``): ``complete``
parks the request there and sends the browser where the registered consent gate says
(``register_consent_gate``); without a gate, such a client gets ``consent_required``, never a code.

``prompt`` and ``max_age`` (OpenID Connect Core §3.1.2.1) are parked with the request: ``login`` (or
``max_age=0``) makes the broker ask the IdP for a fresh sign-in, another ``max_age`` is passed on, and the
broker refuses an upstream ``auth_time`` older than either allows. The code carries the upstream sign-in's
time (``record_authentication``: the IdP's ``auth_time``, else when its login completed), which the ID
token's ``auth_time`` repeats.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..errors import PageError, ServiceError
from ..logs import note_client_id
from ..store import Lt, Store, StoreUnavailable
from ..vault import InvalidEmail, Vault
from .audiences import AudienceRegistry
from .clients import AUTHORIZATION_CODE, Client, ClientRegistry, redirect_uri_matches
from .consent import Consents
from .pkce import challenge_problem
from .records import AUTHORIZATION_CODES, PENDING_AUTHORIZATIONS, new_secret_value, token_hash

MAX_PARAM_LENGTH = 2048
LOGIN = "login"  # the purpose of an app's authorization request
CLEANUP_ONE_IN = 64
SINGLE_VALUE_PARAMS = (
    "client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
    "code_challenge_method", "nonce", "resource", "response_mode", "prompt", "max_age",
)
# OpenID Connect Core §3.1.2.1 ``prompt``: a space-delimited set of these
PROMPT_NONE, PROMPT_LOGIN, PROMPT_CONSENT, PROMPT_SELECT_ACCOUNT = "none", "login", "consent", "select_account"
PROMPT_VALUES = frozenset({PROMPT_NONE, PROMPT_LOGIN, PROMPT_CONSENT, PROMPT_SELECT_ACCOUNT})
MAX_AGE = re.compile(r"[0-9]{1,9}")  # seconds; up to about 31 years
INACTIVE = "this account is restricted or closed"


class ErrorPage(PageError):
    """The request cannot be answered by redirect (unknown client, unregistered redirect URI)."""


class RedirectError(ServiceError):
    """An OAuth error delivered to the client's verified redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state


@dataclass(frozen=True)
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    redirect_uri_given: bool
    state: str | None
    scope: tuple[str, ...]
    audience: str
    code_challenge: str | None
    nonce: str | None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None  # seconds the person's upstream sign-in may be old (OIDC Core §3.1.2.1)

    @property
    def reauthenticate(self) -> bool:
        """``prompt=login``, or ``max_age=0`` ("equivalent to prompt=login"): a fresh sign-in upstream."""
        return PROMPT_LOGIN in self.prompt or self.max_age == 0


@dataclass(frozen=True)
class PendingAuthorization:
    pending_id: str
    client_id: str
    redirect_uri: str
    state: str | None
    expires_at: int
    purpose: str = LOGIN
    reauthenticate: bool = False  # the IdP must make the person sign in afresh (no single sign-on)
    max_age: int | None = None  # otherwise, how old the IdP's sign-in may be, in seconds (None: any age)


class ConsentGate(Protocol):
    def __call__(self, consent_id: str) -> str:
        """Hand the pending consent's id to the person's browser session; return the consent page's URL."""


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """Append parameters to a URI's query, keeping the parameters it already has."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def nonce_replaces_pkce(client: Client, nonce: str | None, scope: Collection[str]) -> bool:
    """RFC 9700 §2.1.1: every code flow uses PKCE, except for a confidential client registered as
    checking ``nonce`` that sends one and asks for an ID token (scope ``openid``) to carry it back."""
    return client.confidential and client.uses_nonce and bool(nonce) and "openid" in scope


class Authorizer:
    """Validates authorization requests, parks them during login, and issues codes."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        clients: ClientRegistry,
        audiences: AudienceRegistry,
        issuer: str,
        code_ttl: int,
        pending_ttl: int,
        clock: Callable[[], float],
        consents: Consents | None = None,
    ) -> None:
        self._store = store
        self._consents = consents
        self._consent_gate: ConsentGate | None = None
        self._vault = vault
        self._clients = clients
        self._audiences = audiences
        self.issuer = issuer
        self._code_ttl = code_ttl
        self._pending_ttl = pending_ttl
        self._clock = clock

    # -- validation --------------------------------------------------------------------------

    def validate(self, params: Mapping[str, str], duplicated: Collection[str] = ()) -> AuthorizationRequest:
        """Check an authorization request; raise ``ErrorPage`` or ``RedirectError``."""
        client = self._client(params, duplicated)
        redirect_uri, given = self._redirect_uri(client, params, duplicated)
        state = params.get("state")

        def refuse(error: str, description: str) -> RedirectError:
            return RedirectError(redirect_uri, error, description, state)

        repeated = [p for p in duplicated if p in SINGLE_VALUE_PARAMS]
        if repeated:
            raise refuse("invalid_request", f"parameter {sorted(repeated)[0]} was given more than once")
        if any(len(v) > MAX_PARAM_LENGTH for v in params.values()):
            raise refuse("invalid_request", "a parameter is too long")
        if "request" in params:
            raise refuse("request_not_supported", "request objects are not supported")
        if "request_uri" in params:
            raise refuse("request_uri_not_supported", "request_uri is not supported")
        if params.get("response_type") != "code":
            raise refuse("unsupported_response_type", "only response_type=code is supported")
        if params.get("response_mode", "query") != "query":
            raise refuse("invalid_request", "only response_mode=query is supported")
        if not client.allows_grant(AUTHORIZATION_CODE):
            raise refuse("unauthorized_client", "this client may not use the authorization code flow")
        prompt = self._prompt(params.get("prompt"), refuse)
        max_age = self._max_age(params.get("max_age"), refuse)
        scope = tuple(dict.fromkeys(params.get("scope", "").split()))
        if not client.allows_scopes(list(scope)):
            raise refuse("invalid_scope", "the requested scope is not allowed for this client")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        problem = challenge_problem(challenge, method)
        if problem:
            raise refuse("invalid_request", problem)
        nonce = params.get("nonce") or None
        if challenge is None and not nonce_replaces_pkce(client, nonce, scope):
            raise refuse("invalid_request", "PKCE (code_challenge with S256) is required" + (
                ", or a nonce with scope openid" if client.uses_nonce and client.confidential else ""))
        audience = self._audience(client, params.get("resource"), refuse)
        return AuthorizationRequest(
            client=client, redirect_uri=redirect_uri, redirect_uri_given=given, state=state, scope=scope,
            audience=audience, code_challenge=challenge, nonce=nonce, prompt=prompt, max_age=max_age,
        )

    @staticmethod
    def _prompt(value: str | None, refuse: Callable[[str, str], RedirectError]) -> frozenset[str]:
        """OIDC Core §3.1.2.1: a space-delimited set; "none" with any other value is an error."""
        prompt = frozenset((value or "").split())
        if PROMPT_NONE in prompt and len(prompt) > 1:
            raise refuse("invalid_request", "prompt=none cannot be combined with another prompt value")
        if not prompt <= PROMPT_VALUES:
            raise refuse("invalid_request", "unsupported prompt value")
        if prompt == {PROMPT_NONE}:  # every login goes to the IdP, which shows its form
            raise refuse("login_required", "the person must log in")
        return prompt

    @staticmethod
    def _max_age(value: str | None, refuse: Callable[[str, str], RedirectError]) -> int | None:
        """OIDC Core §3.1.2.1 ``max_age``: a non-negative number of seconds."""
        if value is None:
            return None
        if not MAX_AGE.fullmatch(value):
            raise refuse("invalid_request", "max_age must be a non-negative integer number of seconds")
        return int(value)

    def _client(self, params: Mapping[str, str], duplicated: Collection[str]) -> Client:
        if "client_id" in duplicated:
            raise ErrorPage("The request names more than one client.")
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            raise ErrorPage("The application that sent you here is not registered.")
        note_client_id(client.client_id)  # for this request's log line
        return client

    @staticmethod
    def _redirect_uri(client: Client, params: Mapping[str, str], duplicated: Collection[str]) -> tuple[str, bool]:
        if "redirect_uri" in duplicated:
            raise ErrorPage("The request names more than one redirect URI.")
        presented = params.get("redirect_uri")
        if presented is None:
            if len(client.redirect_uris) == 1:
                return client.redirect_uris[0], False
            raise ErrorPage("The request has no redirect URI and the application has several.")
        if any(redirect_uri_matches(r, presented) for r in client.redirect_uris):
            return presented, True
        raise ErrorPage("The redirect URI is not registered for this application.")

    def _audience(self, client: Client, resource: str | None, refuse: Callable[[str, str], RedirectError]) -> str:
        """RFC 8707: ``resource`` picks the audience; one registered audience is the default."""
        if resource is None:
            if len(client.audiences) == 1:
                resource = client.audiences[0]
            else:
                raise refuse("invalid_target", "name the audience with the resource parameter")
        if resource not in client.audiences or self._audiences.get(resource) is None:
            raise refuse("invalid_target", "this client may not obtain tokens for that resource")
        return resource

    # -- parking and completion ---------------------------------------------------------------

    def park(self, request: AuthorizationRequest) -> PendingAuthorization:
        """Keep the validated request server side while the person logs in (bounded lifetime)."""
        return self.hold({
            "client_id": request.client.client_id,
            "redirect_uri": request.redirect_uri,
            "redirect_uri_given": request.redirect_uri_given,
            "state": request.state,
            "scope": " ".join(request.scope),
            "audience": request.audience,
            "code_challenge": request.code_challenge,
            "nonce": request.nonce,
            "purpose": LOGIN,
            "prompt": " ".join(sorted(request.prompt)) or None,
            "max_age": request.max_age,
        }, reauthenticate=request.reauthenticate, max_age=request.max_age)

    def register_consent_gate(self, gate: ConsentGate) -> None:
        """Where a third-party client's login goes once the person has signed in (the consent page)."""
        self._consent_gate = gate

    def _needs_consent(self, doc: Mapping[str, Any], subject: str) -> bool:
        client = self._clients.get(doc["client_id"])
        if client is None or not client.third_party:
            return False
        if PROMPT_CONSENT in (doc.get("prompt") or "").split():  # OIDC Core §3.1.2.1: ask, even if allowed
            return True
        scopes = (doc.get("scope") or "").split()
        return self._consents is None or not self._consents.covers(subject, client.client_id, scopes, doc["audience"])

    def hold(self, fields: Mapping[str, Any], *, reauthenticate: bool = False,
             max_age: int | None = None) -> PendingAuthorization:
        """Store a parked login's fields (an app's, or one of ``identity.signins``) for ``pending_ttl``.

        ``reauthenticate`` (a fresh sign-in) and ``max_age`` are what the broker asks the IdP for.
        """
        now = int(self._clock())
        pending = PendingAuthorization(
            pending_id=new_secret_value(), client_id=fields["client_id"], redirect_uri=fields["redirect_uri"],
            state=fields["state"], expires_at=now + self._pending_ttl, purpose=fields["purpose"],
            reauthenticate=reauthenticate, max_age=None if reauthenticate else max_age,
        )
        if secrets.randbelow(CLEANUP_ONE_IN) == 0:  # now and then, drop abandoned logins
            self._store.delete(PENDING_AUTHORIZATIONS, {"expires_at": Lt(now)})
        self._store.insert(PENDING_AUTHORIZATIONS, {
            **fields, "pending_id": pending.pending_id, "created_at": now, "expires_at": pending.expires_at,
        })
        return pending

    def pending(self, pending_id: str) -> dict[str, Any] | None:
        """The parked request if it exists and has not expired."""
        if not isinstance(pending_id, str) or not pending_id:
            return None
        doc = self._store.get(PENDING_AUTHORIZATIONS, pending_id)
        if doc is None or doc["expires_at"] <= self._clock():
            return None
        return doc

    def record_authentication(self, pending_id: str, auth_time: int) -> None:
        """Keep when the person signed in upstream (the IdP's ``auth_time``) with the parked request."""
        if isinstance(pending_id, str) and pending_id:
            self._store.update(PENDING_AUTHORIZATIONS, {"pending_id": pending_id}, {"auth_time": int(auth_time)})

    def take(self, pending_id: str) -> dict[str, Any] | None:
        """Remove and return the parked request: exactly one caller gets it (one-time use)."""
        doc = self.pending(pending_id)
        if doc is None or self._store.delete(PENDING_AUTHORIZATIONS, {"pending_id": pending_id}) != 1:
            return None
        return doc

    def complete(self, pending_id: str, email: str) -> str:
        """Map the verified e-mail to its pseudonym and return the app's redirect URL with a code.

        Raises ``ErrorPage`` if the parked request is unknown, expired or already completed, or is not
        an app's (``identity.signins`` completes the service's own).
        """
        doc = self.take(pending_id)
        if doc is None:
            raise ErrorPage("This login has expired or was already used. Start again from the app.")
        if (doc.get("purpose") or LOGIN) != LOGIN:
            raise ErrorPage("This sign-in can no longer be completed. Nothing was changed; start again.")
        try:
            identity = self._vault.pseudonymise(email).identity
        except InvalidEmail:
            return self.error_redirect(doc, "access_denied", "the identity provider gave no usable e-mail address")
        except StoreUnavailable:
            return self.error_redirect(doc, "temporarily_unavailable", "the identity store is unavailable")
        if not identity.is_active:
            return self.error_redirect(doc, "access_denied", INACTIVE)
        self._vault.record_login(identity.pseudonym)
        # OIDC Core §2 auth_time: the IdP's, recorded by the broker; else now, when its login completed
        doc = {**doc, "auth_time": int(doc.get("auth_time") or self._clock())}
        if self._needs_consent(doc, identity.pseudonym):
            if self._consents is None or self._consent_gate is None:
                return self.error_redirect(doc, "consent_required", "this app needs consent, which cannot be asked")
            return self._consent_gate(self._consents.park(doc, identity.pseudonym))
        return self.issue_code(doc, identity.pseudonym)

    def refusal_if_inactive(self, doc: Mapping[str, Any], subject: str) -> str | None:
        """The app's ``access_denied`` redirect if the person is no longer active (restricted, closed,
        erased) since the request was parked; None if they still are."""
        identity = self._vault.find(subject)
        if identity is not None and identity.is_active:
            return None
        return self.error_redirect(doc, "access_denied", INACTIVE)

    def issue_code(self, doc: Mapping[str, Any], subject: str) -> str:
        """Store a one-time code bound to client, redirect URI and PKCE challenge; return the redirect."""
        now = int(self._clock())
        code = new_secret_value()
        self._store.insert(AUTHORIZATION_CODES, {
            "code_hash": token_hash(code),
            "grant_id": new_secret_value(),
            "client_id": doc["client_id"],
            "redirect_uri": doc["redirect_uri"],
            "redirect_uri_given": bool(doc["redirect_uri_given"]),
            "code_challenge": doc.get("code_challenge"),
            "subject": subject,
            "audience": doc["audience"],
            "scope": doc.get("scope") or "",
            "nonce": doc.get("nonce"),
            "auth_time": int(doc.get("auth_time") or now),  # the sign-in, when a consent step came between
            "expires_at": now + self._code_ttl,
            "used": False,
        })
        return with_query(doc["redirect_uri"], {"code": code, "state": doc.get("state"), "iss": self.issuer})

    def error_redirect(self, doc: Mapping[str, Any], error: str, description: str) -> str:
        """An OAuth error for a parked (hence verified) request, as the app's redirect URL."""
        return self.redirect_for(RedirectError(doc["redirect_uri"], error, description, doc.get("state")))

    def redirect_for(self, err: RedirectError) -> str:
        """The app's redirect URL carrying ``err`` (RFC 6749 §4.1.2.1, with RFC 9207's ``iss``)."""
        return with_query(err.redirect_uri, {
            "error": err.error, "error_description": err.description, "state": err.state, "iss": self.issuer,
        })
