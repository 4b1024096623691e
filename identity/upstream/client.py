"""Authlib's Flask OAuth client for the upstream IdP, and the checks on its discovery document.

Authlib would pass every member of the discovery document as a keyword argument to each session it
builds (``OAuth2Mixin._get_oauth_client(**metadata)``), where ``verify``, ``proxies``, ``default_timeout``,
``scope``, ``code_challenge_method`` or ``token_endpoint_auth_method`` are settings; and it would keep a
document of any shape. So ``UpstreamApp`` loads the document itself: fetched through the back channel
(``UpstreamSession``), every member used type-checked and checked for our use (OpenID Connect Discovery
§3, §4.3), and only ``DISCOVERY_FIELDS`` kept, none of which is a session setting. The settings are ours
alone (``register_upstream``). A document that fails is not kept: the next call fetches it again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import requests
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import Flask
from requests.adapters import BaseAdapter

from .._compat import AUTHLIB_LOADED_AT
from .config import SCOPE, UpstreamConfig
from .errors import UpstreamMisconfigured, UpstreamUnavailable
from .state import StoreStateCache
from .transport import UnusableAnswer, UpstreamSession, is_url, json_object

log = logging.getLogger(__name__)

NAME = "upstream"
# Asymmetric algorithms only: never "none", never HS256 keyed with our client secret.
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")  # in order of preference
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
LISTS = ("response_types_supported", "id_token_signing_alg_values_supported", "token_endpoint_auth_methods_supported")
# What is kept of a discovery document: what the service reads after the checks. Never a name that
# Authlib's session takes as a setting (tests/test_upstream_client.py checks).
DISCOVERY_FIELDS = ("issuer", *ENDPOINTS, "id_token_signing_alg_values_supported",
                    "token_endpoint_auth_methods_supported")


class UpstreamApp(FlaskOAuth2App):
    """Authlib's Flask client, with the discovery document and the JWKS loaded and checked by us."""

    client_cls = UpstreamSession
    server_metadata: dict[str, Any]  # Authlib's attribute: the discovery document as loaded

    def __init__(self, *args: Any, upstream: UpstreamConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upstream = upstream

    def back_channel(self) -> UpstreamSession:
        """A session with our settings only (``client_kwargs``), for the calls that send no token."""
        return UpstreamSession(**self.client_kwargs)

    def load_server_metadata(self) -> dict[str, Any]:
        """The checked discovery document (``DISCOVERY_FIELDS``), fetched once.

        Raises ``UpstreamUnavailable`` when it cannot be fetched, ``UpstreamMisconfigured`` (logged for the
        operator) when the answer is not a document we can use; neither is kept.
        """
        if AUTHLIB_LOADED_AT in self.server_metadata:
            return self.server_metadata
        try:
            with self.back_channel() as session:
                document = json_object(session.request("GET", self.upstream.discovery_url, withhold_token=True))
            problem = metadata_problem(document, self.upstream)
        except UnusableAnswer as exc:  # a 200 that is not a JSON object: our fixed text, never the IdP's
            problem = f"the discovery document is unusable: {exc}"
        except requests.RequestException as exc:  # unreachable, too slow, too large, a redirect, http
            raise UpstreamUnavailable(f"discovery_{type(exc).__name__}") from None
        except Exception as exc:  # noqa: BLE001 - a value no check foresaw: the IdP's document is still at fault
            problem = f"the discovery document could not be checked ({type(exc).__name__})"
        if problem is not None:
            log.error("upstream IdP misconfigured: %s", problem, extra={"issuer": self.upstream.issuer})
            raise UpstreamMisconfigured("discovery_rejected")
        self.client_kwargs["token_endpoint_auth_method"] = token_auth_method(document)
        self.server_metadata = {**allowed_metadata(document), AUTHLIB_LOADED_AT: time.time()}
        return self.server_metadata

    def fetch_jwk_set(self, force: bool = False) -> dict[str, Any]:
        """The IdP's JWKS, cached (``force``: fetched again): a JSON object with a list of key objects.

        Raises a ``requests.RequestException`` (``UnusableAnswer`` for a wrong shape), as for a transport
        failure: the callers answer ``UpstreamUnavailable``.
        """
        metadata = self.load_server_metadata()
        jwks = metadata.get("jwks")
        if jwks and not force:
            return jwks
        with self.back_channel() as session:
            answer = json_object(session.request("GET", metadata["jwks_uri"], withhold_token=True))
        keys = answer.get("keys")
        if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
            raise UnusableAnswer("the JWKS has no list of key objects")
        jwks = {"keys": keys}
        self.server_metadata["jwks"] = jwks
        return jwks


class UpstreamOAuth(OAuth):
    oauth2_client_cls = UpstreamApp


def register_upstream(app: Flask, config: UpstreamConfig, *, cache: StoreStateCache,
                      mounts: Mapping[str, BaseAdapter]) -> UpstreamApp:
    """The Authlib client: ``openid email``, PKCE S256, the back channel's deadline and https rule."""
    oauth = UpstreamOAuth(app, cache=cache)
    client = oauth.register(
        NAME,
        client_id=config.client_id,
        client_secret=config.client_secret,
        upstream=config,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": config.timeout,
                       "require_https": config.require_https, "mounts": dict(mounts)},
    )
    client.framework.expires_in = config.state_ttl  # the session marker lives as long as the pending login
    return client


def metadata_problem(metadata: object, config: UpstreamConfig) -> str | None:
    """What is wrong with a discovery document for our use (OpenID Connect Discovery §3, §4.3), or None.

    Every member used is type-checked first, so a value of any JSON type gives a problem, never an exception.
    """
    if not isinstance(metadata, Mapping):
        return "the discovery document is not a JSON object"
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str):
        return "the discovery document has no issuer string"
    if issuer.rstrip("/") != config.issuer.rstrip("/"):  # §4.3: MUST be identical to the issuer asked for
        return "the discovery document names another issuer"
    for name in ENDPOINTS:
        value = metadata.get(name)
        if not is_url(value, ("https", "http")):
            return f"the discovery document has no usable {name}"
        if config.require_https and not is_url(value):
            return f"{name} must be https in production"
    for name in LISTS:
        if metadata.get(name) is not None and not is_string_list(metadata[name]):
            return f"the discovery document's {name} is not a list of strings"
    if "code" not in offered(metadata, "response_types_supported", ["code"]):
        return "the IdP does not support the authorization code flow"
    if not signing_algorithms(metadata):
        return "the IdP signs ID tokens with no algorithm we accept (RS256, PS256, ES256)"
    if token_auth_method(metadata) is None:
        return "the IdP supports neither client_secret_basic nor client_secret_post"
    return None


def allowed_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The members of a checked document that are kept (``DISCOVERY_FIELDS``), as we use them."""
    method = token_auth_method(metadata)
    return {
        "issuer": metadata["issuer"],
        **{name: metadata[name] for name in ENDPOINTS},
        "id_token_signing_alg_values_supported": signing_algorithms(metadata),
        "token_endpoint_auth_methods_supported": [method] if method else [],
    }


def is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def offered(metadata: Mapping[str, Any], name: str, default: list[str]) -> list[str]:
    """A list member of the document (§3: absent means ``default``); a value of another type offers nothing."""
    value = metadata.get(name)
    if value is None:
        return default
    return list(value) if is_string_list(value) else []


def signing_algorithms(metadata: Mapping[str, Any]) -> list[str]:
    """The ID token algorithms both sides accept (absent: RS256, OpenID Connect Discovery §3)."""
    algorithms = offered(metadata, "id_token_signing_alg_values_supported", ["RS256"])
    return [alg for alg in SIGNING_ALGORITHMS if alg in algorithms]


def token_auth_method(metadata: Mapping[str, Any]) -> str | None:
    """The client authentication we use at the token endpoint (absent: ``client_secret_basic``, §3)."""
    methods = offered(metadata, "token_endpoint_auth_methods_supported", ["client_secret_basic"])
    return next((m for m in AUTH_METHODS if m in methods), None)
