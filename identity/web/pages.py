"""HTML pages people see (error pages); plain, accessible, no external assets."""

from __future__ import annotations

from flask import Response, make_response, render_template


def error_page(message: str, status: int = 400) -> Response:
    """A human-readable error page; never a redirect, never internal detail."""
    response = make_response(render_template("error.html", message=message), status)
    response.headers["Cache-Control"] = "no-store"
    return response
