"""The upstream OpenID Provider as the broker sees it, from ``IDENTITY_UPSTREAM_*`` settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings

CALLBACK_PATH = "/login/callback"
SCOPE = "openid email"


def callback_url(issuer: str) -> str:
    """The redirect URI to register at the IdP: ``{IDENTITY_ISSUER}/login/callback``."""
    return issuer.rstrip("/") + CALLBACK_PATH


@dataclass(frozen=True)
class UpstreamConfig:
    """``issuer`` is the configured one; the discovery document's must match it (modulo one final ``/``)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    callback_url: str
    timeout: float = 5.0  # seconds for a whole back-channel call, connecting to last byte (transport.py)
    state_ttl: int = 600
    require_https: bool = True
    jwks_max_age: float = 300.0  # a key the IdP withdrew is trusted at most this long after

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamConfig | None:
        """None when no upstream is configured (development may then use the development IdP)."""
        if not (settings.upstream_issuer and settings.upstream_client_id and settings.upstream_client_secret):
            return None
        return cls(issuer=settings.upstream_issuer, client_id=settings.upstream_client_id,
                   client_secret=settings.upstream_client_secret, callback_url=callback_url(settings.issuer),
                   timeout=settings.upstream_timeout, state_ttl=settings.pending_login_ttl,
                   require_https=settings.is_production)
