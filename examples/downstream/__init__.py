"""An example downstream service: behavioural records stored under the pseudonym only.

It verifies the identity service's access tokens with ``identity.verify`` and never sees, stores
or accepts an e-mail address. ``python -m examples.downstream`` serves it (see docs/downstream.md).
"""

from __future__ import annotations

from .app import create_app
from .config import DownstreamConfig, load_config

__all__ = ["DownstreamConfig", "create_app", "load_config"]
