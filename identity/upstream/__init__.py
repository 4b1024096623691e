"""Login through an external OpenID Provider (Auth0 or any compliant one), brokered for ``/authorize``.

``configure_login`` is what ``create_app`` calls: it installs the broker it is given, or builds one
from ``IDENTITY_UPSTREAM_*``, or — with no upstream configured, ``IDENTITY_ENV=development`` set
explicitly and a loopback http issuer — mounts the development IdP and builds the same broker against
it (its back channel served in-process). Otherwise no login is offered (``/authorize`` answers
``temporarily_unavailable``) and a warning says why.
"""

from __future__ import annotations

import logging

from flask import Flask

from ..config import ConfigError
from ..devidp import development_idp_refusal, mount_devidp
from ..services import Services
from ..web.login import LoginBroker
from .broker import UpstreamBroker
from .config import CALLBACK_PATH, UpstreamConfig, callback_url
from .transport import WsgiTransport

__all__ = ["CALLBACK_PATH", "UpstreamBroker", "UpstreamConfig", "WsgiTransport", "callback_url", "configure_login"]

log = logging.getLogger(__name__)


def configure_login(app: Flask, services: Services, broker: LoginBroker | None = None) -> LoginBroker | None:
    """The broker for ``app`` (``init_app`` called if it has one); None if no login can be offered."""
    if broker is None:
        broker = _broker_from_settings(app, services)
    init_app = getattr(broker, "init_app", None)
    if callable(init_app):
        init_app(app)
    return broker


def _broker_from_settings(app: Flask, services: Services) -> UpstreamBroker | None:
    settings = services.settings
    config = UpstreamConfig.from_settings(settings)
    if config is not None:
        return UpstreamBroker(config)
    if settings.is_production:
        raise ConfigError(["refusing to start in production: IDENTITY_UPSTREAM_* is not set "
                           "(the development IdP is never used in production)"])
    refusal = development_idp_refusal(settings)
    if refusal is not None:
        log.warning("no login is offered: IDENTITY_UPSTREAM_* is not set, and %s", refusal)
        return None
    idp = mount_devidp(app, settings, store=services.store, secret=services.derived_secret("devidp-v1"),
                       redirect_uri=callback_url(settings.issuer))
    config = UpstreamConfig(issuer=idp.issuer, client_id=idp.config.client_id,
                            client_secret=idp.config.client_secret, callback_url=callback_url(settings.issuer),
                            timeout=settings.upstream_timeout, state_ttl=settings.pending_login_ttl,
                            require_https=False)
    return UpstreamBroker(config, mounts={idp.issuer + "/": WsgiTransport(idp.app, idp.issuer)})
