"""``python -m examples.webapp [--port 8000]``: serve the example app alone (development only)."""

from __future__ import annotations

import argparse
import sys

from .app import create_app
from .config import WebAppConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.webapp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        app = create_app(load_config())
    except WebAppConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
