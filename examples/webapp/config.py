"""The example app's settings, from ``WEBAPP_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class WebAppConfigError(ValueError):
    """The example app cannot start; the message names each variable at fault."""


@dataclass(frozen=True)
class WebAppConfig:
    issuer: str  # the identity service, exactly as its tokens' iss
    client_id: str  # this app's registration (public client, PKCE)
    base_url: str  # where this app is served, e.g. http://127.0.0.1:8000
    records_url: str  # the example downstream service
    audience: str  # the downstream service's audience: the resource the access token is for
    scope: str = "openid records:read records:write"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"

    @property
    def post_logout_redirect_uri(self) -> str:
        return f"{self.base_url}/signed-out"


def load_config(environ: Mapping[str, str] | None = None) -> WebAppConfig:
    env = os.environ if environ is None else environ
    client_id = env.get("WEBAPP_CLIENT_ID", "").strip()
    if not client_id:
        raise WebAppConfigError("WEBAPP_CLIENT_ID is required (scripts/clients.py add --public --third-party …)")
    records = env.get("WEBAPP_RECORDS_URL", "http://127.0.0.1:5001").strip().rstrip("/")
    return WebAppConfig(
        issuer=env.get("WEBAPP_ISSUER", "http://127.0.0.1:5000").strip(),
        client_id=client_id,
        base_url=env.get("WEBAPP_BASE_URL", "http://127.0.0.1:8000").strip().rstrip("/"),
        records_url=records,
        audience=env.get("WEBAPP_AUDIENCE", records).strip(),
    )
