"""HTTP side of the authorization server: /authorize, /token, /revoke, /introspect, discovery."""

from __future__ import annotations

from typing import Mapping

from flask import Blueprint, Response, jsonify, redirect, request

from ..errors import InvalidRequest
from ..oauth.authorize import ErrorPage, RedirectError
from ..oauth.metadata import server_metadata
from .context import services
from .login import login_broker
from .pages import error_page

blueprint = Blueprint("oauth", __name__)
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _single_valued_form() -> Mapping[str, str]:
    """The form body of a back-channel request; RFC 6749 §3.2: no parameter twice."""
    if request.mimetype != FORM_CONTENT_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_CONTENT_TYPE}")
    form = request.form
    repeated = [k for k in form if len(form.getlist(k)) > 1]
    if repeated:
        raise InvalidRequest(f"parameter {sorted(repeated)[0][:40]} was given more than once")
    return form.to_dict()


@blueprint.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    source = request.args if request.method == "GET" else request.form
    duplicated = {k for k in source if len(source.getlist(k)) > 1}
    oauth = services().oauth
    try:
        validated = oauth.authorizer.validate(source.to_dict(), duplicated)
    except ErrorPage as err:
        return error_page(err.message, err.status)
    except RedirectError as err:
        return _no_store(redirect(oauth.authorizer.redirect_for(err), code=303))
    broker = login_broker()
    if broker is None:
        err = RedirectError(validated.redirect_uri, "temporarily_unavailable", "no login method is configured",
                            validated.state)
        return _no_store(redirect(oauth.authorizer.redirect_for(err), code=303))
    pending = oauth.authorizer.park(validated)
    return _no_store(broker.begin(pending))


@blueprint.post("/token")
def token() -> Response:
    body = services().oauth.token_endpoint.handle(_single_valued_form(), request.headers.get("Authorization"))
    return _no_store(jsonify(body))


@blueprint.post("/revoke")
def revoke() -> Response:
    services().oauth.token_status.revoke(_single_valued_form(), request.headers.get("Authorization"))
    return _no_store(Response(status=200))


@blueprint.post("/introspect")
def introspect() -> Response:
    body = services().oauth.token_status.introspect(_single_valued_form(), request.headers.get("Authorization"))
    return _no_store(jsonify(body))


def _metadata() -> Response:
    svc = services()
    scopes = sorted({s for c in svc.oauth.clients.all() for s in c.scopes} | {"openid"})
    response = jsonify(server_metadata(svc.settings.issuer, scopes=scopes))
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


blueprint.add_url_rule("/.well-known/openid-configuration", "openid_configuration", _metadata)
blueprint.add_url_rule("/.well-known/oauth-authorization-server", "oauth_metadata", _metadata)
