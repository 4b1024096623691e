"""``import identity.verify`` stays free of the server: no Flask, no pymongo, no server modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_MODULES = ("flask", "pymongo", "identity.app", "identity.store", "identity.vault", "identity.keys",
                  "identity.config", "identity.tokens", "identity.oauth", "authlib", "werkzeug")


def loaded_after(statement: str) -> list[str]:
    probe = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {SERVER_MODULES!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_core_imports_none_of_the_server():
    statement = "import identity.verify\nfrom identity.verify import TokenVerifier, generate_audience_key"
    assert loaded_after(statement) == []


def test_requests_is_only_imported_when_the_default_fetcher_is_built():
    probe = "import sys, identity.verify\nprint('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flask_submodule_brings_flask_but_not_the_server():
    assert loaded_after("import identity.verify.flask") == ["flask", "werkzeug"]
