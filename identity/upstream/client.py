"""Authlib's Flask OAuth client for the upstream IdP, and the checks on its discovery document."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import Flask
from requests.adapters import BaseAdapter

from .config import SCOPE, UpstreamConfig
from .state import StoreStateCache
from .transport import UpstreamSession

NAME = "upstream"
# Asymmetric algorithms only: never "none", never HS256 keyed with our client secret.
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")  # in order of preference


class UpstreamApp(FlaskOAuth2App):
    client_cls = UpstreamSession


class UpstreamOAuth(OAuth):
    oauth2_client_cls = UpstreamApp


def register_upstream(app: Flask, config: UpstreamConfig, *, cache: StoreStateCache,
                      mounts: Mapping[str, BaseAdapter]) -> UpstreamApp:
    """The Authlib client: discovery URL, ``openid email``, PKCE S256, the timeout on every call."""
    oauth = UpstreamOAuth(app, cache=cache)
    client = oauth.register(
        NAME,
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.discovery_url,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": config.timeout,
                       "mounts": dict(mounts)},
    )
    client.framework.expires_in = config.state_ttl  # the session marker lives as long as the pending login
    return client


def metadata_problem(metadata: Mapping[str, Any], config: UpstreamConfig) -> str | None:
    """What is wrong with a discovery document for our use (OpenID Connect Discovery §3, §4.3), or None."""
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != config.issuer.rstrip("/"):
        return "the discovery document names another issuer"
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = metadata.get(name)
        if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
            return f"the discovery document has no usable {name}"
        if config.require_https and urlsplit(value).scheme != "https":
            return f"{name} must be https in production"
    if "code" not in metadata.get("response_types_supported", ["code"]):
        return "the IdP does not support the authorization code flow"
    if not signing_algorithms(metadata):
        return "the IdP signs ID tokens with no algorithm we accept (RS256, PS256, ES256)"
    if token_auth_method(metadata) is None:
        return "the IdP supports neither client_secret_basic nor client_secret_post"
    return None


def signing_algorithms(metadata: Mapping[str, Any]) -> list[str]:
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    return [alg for alg in SIGNING_ALGORITHMS if alg in offered]


def token_auth_method(metadata: Mapping[str, Any]) -> str | None:
    offered = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return next((m for m in AUTH_METHODS if m in offered), None)
