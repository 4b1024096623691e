"""The application factory: settings → services → blueprints → the request pipeline."""

from __future__ import annotations

from flask import Flask

from .config import Settings, load_settings
from .logs import configure_logging
from .services import Clock, build_services
from .store import ClientFactory, Store
from .store.mongo import REQUEST_OPERATION_TIMEOUT_SECONDS
from .upstream import configure_login
from .web import health, jwks, oauth
from .web.context import EXTENSION
from .web.errors import register_error_handlers
from .web.headers import MAX_BODY, install_security_headers
from .web.login import LoginBroker, install_login_broker
from .web.me import install_self_service
from .web.person import install_person_pages
from .web.pipeline import request_pipeline
from .web.ratelimit import install_rate_limits

MAX_REQUEST_BYTES = MAX_BODY
SESSION_COOKIE = "identity_session"  # http (development): browsers refuse the host prefix without Secure
# https: Secure, path /, no Domain (RFC 6265bis §4.1.3.2): a sibling subdomain cannot plant a session of its
# own (a sign-in's state marker, the account sign-in, the CSRF token) for login CSRF
SECURE_SESSION_COOKIE = "__Host-identity_session"


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    mongo_client_factory: ClientFactory | None = None,
    login_broker: LoginBroker | None = None,
) -> Flask:
    """Build the app from validated settings (read from the environment when not given).

    Raises ``ConfigError`` (every problem, one per line) before serving anything.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    services = build_services(settings, store=store, clock=clock, mongo_client_factory=mongo_client_factory,
                              mongo_operation_timeout=REQUEST_OPERATION_TIMEOUT_SECONDS)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=services.derived_secret("flask-session-v1"),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.issuer_is_https,
        SESSION_COOKIE_NAME=SECURE_SESSION_COOKIE if settings.issuer_is_https else SESSION_COOKIE,
        JSON_SORT_KEYS=False,
    )
    app.extensions[EXTENSION] = services
    register_error_handlers(app)
    install_security_headers(app, https=settings.issuer_is_https)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(jwks.blueprint)
    app.register_blueprint(oauth.blueprint)
    install_self_service(app, services)
    install_person_pages(app, services)  # consent, /account, /logout, /userinfo
    login = configure_login(app, services, login_broker)
    install_login_broker(app, login.broker)
    install_rate_limits(app, settings)
    # Every request passes these WSGI layers, outermost first, then Flask (the hooks and blueprints above);
    # identity/web/pipeline.py says why in this order. scripts/serve.py adds StrictHttp around them all.
    #   RequestTelemetry   request id, access log line, metrics: every answer, the refusals below included
    #   RequestSizeLimits  414 / 431 / 413 for an oversized query string, header or body, on every route
    #   TrustedProxyLayer  REMOTE_ADDR from X-Forwarded-For (only with IDENTITY_TRUSTED_PROXIES)
    #   /devidp mount      the development IdP (only in explicit local development: login.mounts)
    #   TokenFastPath      POST /token without Flask's request machinery (issue 16); the rest passes through
    # Replacing wsgi_app is Flask's documented way to add WSGI middleware; its stubs type it as a method.
    app.wsgi_app = request_pipeline(  # type: ignore[method-assign, assignment]
        app, https=settings.issuer_is_https, trusted_proxies=settings.trusted_proxies, mounts=login.mounts)
    # Start-up reads and writes the store (the self audience): close that connection, so that none is
    # open when gunicorn --preload forks the workers (SQLite state must never cross a fork).
    services.store.close()
    return app


