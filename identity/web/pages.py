"""HTML pages people see; plain, accessible, no external assets.

``error_page`` is the service's plain error page. ``person_page`` renders the person's own pages
(consent, account, sign-out) in their language, never cached, with a CSP whose ``form-action`` also
lets a form's redirect reach where it must go; ``problem_page`` is their error page.
"""

from __future__ import annotations

from typing import Any, Iterable

from flask import Response, current_app, make_response, render_template

from .headers import html_csp, no_store, with_form_action
from .i18n import localised, translate


def error_page(message: str, status: int = 400) -> Response:
    """A human-readable error page, in the person's language where a translation exists; never a
    redirect, never internal detail."""
    return problem_page(message, status)


def person_page(template: str, *, status: int = 200, form_action_to: Iterable[str | None] = (),
                **context: Any) -> Response:
    """One of the person's pages: translated, ``no-store``, forms allowed to redirect to ``form_action_to``."""
    response = make_response(render_template(template, **context), status)
    sources = [s for s in form_action_to if s]
    if sources:
        page_csp = current_app.extensions.get("identity.page_csp") or html_csp(current_app)
        response.headers["Content-Security-Policy"] = with_form_action(page_csp, sources)
    return localised(no_store(response))


def problem_page(message: str, status: int = 400, *, link: dict[str, str] | None = None) -> Response:
    """The person's error page, in their language (``message`` is an English catalogue text)."""
    return person_page("problem.html", status=status, message=translate(message), link=link)
