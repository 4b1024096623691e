"""WSGI entry point: ``scripts/serve.py`` serves it (README "Production"); ``gunicorn wsgi:app`` too."""

from __future__ import annotations

import sys

from identity import create_app
from identity.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(1) from None
