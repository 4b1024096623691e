"""``GET|POST /userinfo``: the UserInfo endpoint (OpenID Connect Core §5.3).

The access token must be for the service's own audience (``{issuer}/me``, as ``/me`` uses) and carry
the scope ``openid``; it is verified with the downstream library (``identity.verify``), then against
the service's records (not revoked, its grant live, the person active). The answer is ``sub`` as the
client sees it (``Subjects.subject_for``) and nothing else: no scope this service offers covers any
other claim, and an e-mail address it could not give anyway. Errors follow RFC 6750 §3 with
``WWW-Authenticate: Bearer realm="identity"``; only the ``Authorization`` header is read.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..verify.flask import current_token, require_token
from .context import services
from .headers import no_store
from .me import invalid_token, live_subject

blueprint = Blueprint("userinfo", __name__)

USERINFO_PATH = "/userinfo"
USERINFO_SCOPE = "openid"


@blueprint.route(USERINFO_PATH, methods=["GET", "POST"])
@require_token(scope=USERINFO_SCOPE)
def userinfo() -> Response:
    subject = live_subject()
    if subject is None:
        return invalid_token()
    return no_store(jsonify(sub=services().oauth.subjects.subject_for(subject, client=current_token().client_id)))
