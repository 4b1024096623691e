"""``python -m examples.downstream [--port 5001]``: serve the example service (development only)."""

from __future__ import annotations

import argparse
import logging
import sys

from .app import create_app
from .config import DownstreamConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.downstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        app = create_app(load_config())
    except DownstreamConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
