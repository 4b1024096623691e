"""``scripts/serve.py --app tests.serve_wsgi:app`` for tests/test_serve.py: the service plus two test routes.

``/_test/slow?seconds=N`` answers after N seconds (a request in flight during a shutdown);
``/_test/environ`` names the ``IDENTITY_*`` keys of the WSGI environ it was called with, and the process and
thread that answered. Test only.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from flask import jsonify, request

from identity import create_app
from identity.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(1) from None


@app.get("/_test/slow")
def slow():
    time.sleep(min(float(request.args.get("seconds", "1")), 10.0))
    return jsonify(pid=os.getpid())


@app.get("/_test/environ")
def environ():
    return jsonify(identity_keys=sorted(k for k in request.environ if k.startswith("IDENTITY_")), pid=os.getpid(),
                   thread=threading.get_native_id())
