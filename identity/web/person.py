"""The person's side in the browser: consent, the account page, sign-out, and UserInfo for their apps.

``install_person_pages`` is what ``create_app`` calls, after the self-service endpoints (UserInfo uses
their token verifier). The pages are server-rendered, in Dutch or English (``identity.web.i18n``).
"""

from __future__ import annotations

from flask import Flask

from ..services import Services
from . import logout, userinfo
from .account import install_account
from .consent import install_consent
from .i18n import install_i18n


def install_person_pages(app: Flask, svc: Services) -> None:
    install_i18n(app)
    install_consent(app, svc)
    install_account(app, svc)
    app.register_blueprint(logout.blueprint)
    app.register_blueprint(userinfo.blueprint)
