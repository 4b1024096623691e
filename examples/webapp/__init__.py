"""A small example app: an OpenID Connect relying party of the identity service.

It signs the person in with the authorization code flow and PKCE (S256), checks ``state`` and
``iss``, verifies the ID token with ``identity.verify.IdTokenVerifier`` and shows its claims, calls
the example downstream service (``examples/downstream``) with the access token, renews access with
the refresh token, and signs out through the service's ``end_session_endpoint``. Everything it needs
comes from the service's discovery document. ``make demo`` (``python -m examples.demo``) runs it
together with the service and the downstream service.
"""

from __future__ import annotations

from .app import create_app
from .config import WebAppConfig, load_config

__all__ = ["WebAppConfig", "create_app", "load_config"]
