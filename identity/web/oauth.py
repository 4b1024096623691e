"""HTTP side of the authorization server: /authorize, /token, /revoke, /introspect, discovery.

``POST /authorize`` without the session cookie (another site's form: browsers do not send SameSite=Lax
cookies with a cross-site POST) is answered 303 to the same request as a GET, which the browser sends with
its cookies; so a login started that way never replaces the browser's session cookie (a sign-in or an
e-mail change under way).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..errors import InvalidRequest
from ..oauth.authorize import AuthorizationRequest, RedirectError
from .context import services
from .headers import MAX_QUERY_STRING, no_store
from .login import login_broker
from .ratelimit import CLIENT_AUTH_BUDGET

blueprint = Blueprint("oauth", __name__)
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
T = TypeVar("T")


def _single_valued_form() -> Mapping[str, str]:
    """The form body of a back-channel request; RFC 6749 §3.2: no parameter twice."""
    if request.mimetype != FORM_CONTENT_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_CONTENT_TYPE}")
    form = request.form
    repeated = [k for k in form if len(form.getlist(k)) > 1]
    if repeated:
        raise InvalidRequest(f"parameter {sorted(repeated)[0][:40]} was given more than once")
    return form.to_dict()


def session_cookie_presented() -> bool:
    """Whether the request carries the Flask session cookie (a cross-site POST does not: SameSite=Lax)."""
    return current_app.session_interface.get_cookie_name(current_app) in request.cookies


@blueprint.route("/authorize", methods=["GET", "POST"])
def authorize() -> BaseResponse:
    source = request.args if request.method == "GET" else request.form
    duplicated = {k for k in source if len(source.getlist(k)) > 1}
    oauth = services().oauth
    try:
        validated = oauth.authorizer.validate(source.to_dict(), duplicated)
        if request.method == "POST" and not session_cookie_presented():
            return no_store(redirect(_as_get(source.items(multi=True), validated), code=303))
    except RedirectError as err:
        return no_store(redirect(oauth.authorizer.redirect_for(err), code=303))
    broker = login_broker()
    if broker is None:
        unavailable = RedirectError(validated.redirect_uri, "temporarily_unavailable", "no login method is configured",
                                    validated.state)
        return no_store(redirect(oauth.authorizer.redirect_for(unavailable), code=303))
    pending = oauth.authorizer.park(validated)
    return no_store(broker.begin(pending))


def _as_get(params: Iterable[tuple[str, str]], validated: AuthorizationRequest) -> str:
    """``/authorize`` with ``params`` as its query; ``RedirectError`` if that would be too long to serve."""
    query = urlencode(list(params))
    if len(query) > MAX_QUERY_STRING:
        raise RedirectError(validated.redirect_uri, "invalid_request", "the authorization request is too long",
                            validated.state)
    return f"{url_for('oauth.authorize')}?{query}"


def within_client_budget(app: Flask, environ: Mapping[str, Any], form: Mapping[str, str],
                         authorization: str | None, call: Callable[[], T]) -> T:
    """``call()``, which authenticates the client, within the rate limits' client-authentication budget."""
    budget = app.extensions.get(CLIENT_AUTH_BUDGET)
    return call() if budget is None else budget.run(environ, form, authorization, call)


@blueprint.post("/token")
def token() -> Response:
    form, authorization = _single_valued_form(), request.headers.get("Authorization")
    body = within_client_budget(current_app, request.environ, form, authorization,
                                lambda: services().oauth.token_endpoint.handle(form, authorization))
    return no_store(jsonify(body))


@blueprint.post("/revoke")
def revoke() -> Response:
    form, authorization = _single_valued_form(), request.headers.get("Authorization")
    within_client_budget(current_app, request.environ, form, authorization,
                         lambda: services().oauth.token_status.revoke(form, authorization))
    return no_store(Response(status=200))


@blueprint.post("/introspect")
def introspect() -> Response:
    form, authorization = _single_valued_form(), request.headers.get("Authorization")
    body = within_client_budget(current_app, request.environ, form, authorization,
                                lambda: services().oauth.token_status.introspect(form, authorization))
    return no_store(jsonify(body))


def _metadata() -> Response:
    response = jsonify(services().oauth.discovery.current())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


blueprint.add_url_rule("/.well-known/openid-configuration", "openid_configuration", _metadata)
blueprint.add_url_rule("/.well-known/oauth-authorization-server", "oauth_metadata", _metadata)
