"""Login through an external OpenID Provider (Auth0 or any compliant one), brokered for ``/authorize``.

``configure_login`` is what ``create_app`` calls: it installs the broker it is given, or builds one
from ``IDENTITY_UPSTREAM_*``, or — with no upstream configured, ``IDENTITY_ENV=development`` set
explicitly and a loopback http issuer — builds the development IdP (``Login.mounts``: the request pipeline
serves it) and the same broker against it (its back channel served in-process). Otherwise no login is offered (``/authorize`` answers
``temporarily_unavailable``) and a warning says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flask import Flask

from ..config import ConfigError
from ..devidp import MOUNT_PATH, build_devidp, development_idp_refusal, this_machine_only
from ..services import Services
from ..web.login import LoginBroker
from .broker import UpstreamBroker
from .config import CALLBACK_PATH, UpstreamConfig, callback_url
from .transport import WsgiTransport

__all__ = ["CALLBACK_PATH", "Login", "UpstreamBroker", "UpstreamConfig", "WsgiTransport", "callback_url",
           "configure_login"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Login:
    """How people log in: the broker (None: no login is offered) and the WSGI apps it needs served under a
    path prefix of the service (the development IdP at ``/devidp``; none in production)."""

    broker: LoginBroker | None
    mounts: Mapping[str, Callable[..., Any]] = field(default_factory=dict)  # WSGI apps


def configure_login(app: Flask, services: Services, broker: LoginBroker | None = None) -> Login:
    """The broker for ``app`` (``init_app`` called if it has one), and what it needs served."""
    login = Login(broker) if broker is not None else _login_from_settings(services)
    init_app = getattr(login.broker, "init_app", None)
    if callable(init_app):
        init_app(app)
    return login


def _login_from_settings(services: Services) -> Login:
    settings = services.settings
    config = UpstreamConfig.from_settings(settings)
    if config is not None:
        return Login(UpstreamBroker(config))
    if settings.is_production:
        raise ConfigError(["refusing to start in production: IDENTITY_UPSTREAM_* is not set "
                           "(the development IdP is never used in production)"])
    refusal = development_idp_refusal(settings)
    if refusal is not None:
        log.warning("no login is offered: IDENTITY_UPSTREAM_* is not set, and %s", refusal)
        return Login(None)
    idp = build_devidp(settings, store=services.store, secret=services.derived_secret("devidp-v1"),
                       redirect_uri=callback_url(settings.issuer))
    config = UpstreamConfig(issuer=idp.issuer, client_id=idp.config.client_id,
                            client_secret=idp.config.client_secret, callback_url=callback_url(settings.issuer),
                            timeout=settings.upstream_timeout, state_ttl=settings.pending_login_ttl,
                            require_https=False)
    broker = UpstreamBroker(config, mounts={idp.issuer + "/": WsgiTransport(idp.app, idp.issuer)})
    return Login(broker, {MOUNT_PATH: this_machine_only(idp.app)})
