"""Sign-ins at the upstream IdP, whoever asked for them: an app (OAuth) or the service itself.

An app's login is the ``Authorizer``'s (``identity.oauth.authorize``): it ends in a code. The service's
own pages need a fresh sign-in upstream too, and no code: the e-mail change (rectification, GDPR
Art. 16, ``identity.email_change``) and the account page. ``park_for_service`` parks such a sign-in
with a purpose, and ``complete`` hands its verified e-mail to the handler registered for that purpose
(``register_completion``) instead of the Authorizer. The login brokers finish every sign-in here
(``complete``, or ``fail`` with an error for the page or app that asked).

Both kinds wait in the same store records, the Authorizer's parked logins: a sign-in of the service's
own names the issuer as its client and the page to come back to as its redirect URI, so a failure
reaches that page as ``?error=…``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from .oauth.authorize import LOGIN, Authorizer, ErrorPage, PendingAuthorization


class CompletionHandler(Protocol):
    def __call__(self, parked: Mapping[str, Any], email: str) -> str:
        """Act on the verified e-mail for a sign-in of the service's own; return where to go next.

        Raises ``ErrorPage`` when the sign-in cannot complete what it was started for.
        """


class SignIns:
    """Parks the service's own sign-ins and completes every parked sign-in (an app's or the service's)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer
        self._completions: dict[str, CompletionHandler] = {}

    def __repr__(self) -> str:
        return "SignIns()"

    def register_completion(self, purpose: str, handler: CompletionHandler) -> None:
        """``complete`` gives the verified e-mail of a sign-in parked for ``purpose`` to ``handler``."""
        if purpose == LOGIN:
            raise ValueError("an app's login completes with a code")
        self._completions[purpose] = handler

    def park_for_service(self, *, purpose: str, return_to: str, reference: str) -> PendingAuthorization:
        """Park a sign-in the service asks for itself (no app, no code): a fresh sign-in upstream.

        ``return_to`` is the service's own page the person comes back to (with ``error=…`` if the sign-in
        fails); ``reference`` lets the purpose's handler find its own record (a hash, never a secret).
        """
        if purpose == LOGIN or purpose not in self._completions:
            raise ValueError(f"no completion is registered for the purpose {purpose!r}")
        return self._authorizer.hold({
            "client_id": self._authorizer.issuer, "redirect_uri": return_to, "redirect_uri_given": True,
            "state": None, "scope": "", "audience": "", "code_challenge": None, "nonce": None, "purpose": purpose,
            "reference": reference,
        }, reauthenticate=True)

    def pending(self, pending_id: str) -> dict[str, Any] | None:
        """The parked sign-in if it exists and has not expired."""
        return self._authorizer.pending(pending_id)

    def complete(self, pending_id: str, email: str) -> str:
        """Where the browser goes once the person signed in upstream as ``email`` (one time only).

        An app's login gets its code (``Authorizer.complete``); a sign-in of the service's own goes to its
        purpose's handler. Raises ``ErrorPage`` if the sign-in is unknown, expired or already completed.
        """
        parked = self._authorizer.pending(pending_id)
        purpose = (parked or {}).get("purpose") or LOGIN
        if purpose == LOGIN:
            return self._authorizer.complete(pending_id, email)
        doc = self._authorizer.take(pending_id)
        if doc is None:
            raise ErrorPage("This sign-in has expired or was already used. Nothing was changed; start again.")
        handler = self._completions.get(purpose)
        if handler is None:  # e.g. parked by an older release for a purpose that no longer exists
            raise ErrorPage("This sign-in can no longer be completed. Nothing was changed; start again.")
        return handler(doc, email)

    def fail(self, pending_id: str, error: str, description: str) -> str | None:
        """End a parked sign-in that failed upstream: the URL that tells its app or page; None if it is gone."""
        doc = self._authorizer.take(pending_id)
        return None if doc is None else self._authorizer.error_redirect(doc, error, description)
