"""CSRF protection for HTML forms: a random token kept in the session cookie, echoed by the form.

The session cookie is HttpOnly and SameSite=Lax, so another site's page can neither read the token
nor send the cookie with a cross-site POST; the token check refuses the forged form even where a
browser ignores SameSite. Works for any Flask app (the service and the development IdP alike).
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"


def csrf_token() -> str:
    """This session's token (created on first use) for a hidden ``csrf_token`` form field."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def csrf_ok() -> bool:
    """True if the posted form carries this session's token (compared in constant time)."""
    expected, given = session.get(SESSION_KEY), request.form.get(FORM_FIELD, "")
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), given.encode())
