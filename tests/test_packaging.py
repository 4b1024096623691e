"""pyproject.toml and packages/identity-verify: what gets installed, and that identity-verify stands alone.

The slow tests build both wheels from a copy of this checkout (nothing is written into the tree) and install
them into fresh virtual environments: identity-verify alone, with only its declared dependencies (from the
package index pip is configured with), verifying a real token where Flask is absent; and both wheels
together, sharing the ``identity`` package.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERIFY_PROJECT = ROOT / "packages" / "identity-verify"
SERVICE = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
VERIFY = tomllib.loads((VERIFY_PROJECT / "pyproject.toml").read_text("utf-8"))


def pins(lines: list[str]) -> dict[str, str]:
    """``name==version`` requirements (comments and blank lines skipped), by normalised name."""
    found = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_service_requires_exactly_the_pins_of_requirements_txt_and_identity_verify():
    declared = pins(SERVICE["project"]["dependencies"])
    assert declared.pop("identity-verify") == VERIFY["project"]["version"]
    assert declared == pins((ROOT / "requirements.txt").read_text("utf-8").splitlines())


def test_every_subpackage_of_identity_belongs_to_exactly_one_distribution():
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "identity").rglob("__init__.py")}
    service = set(SERVICE["tool"]["setuptools"]["packages"]) - {"identity_scripts"}
    verify = set(VERIFY["tool"]["setuptools"]["packages"])
    assert not service & verify
    assert service | verify == on_disk, "list a new subpackage in pyproject.toml [tool.setuptools] packages"


def test_the_verify_distribution_needs_nothing_of_the_server():
    names = set(pins([re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
                      for requirement in VERIFY["project"]["dependencies"]]))
    assert names == {"cryptography", "joserfc", "pyjwt", "requests"}
    assert VERIFY["project"]["optional-dependencies"] == {"flask": ["flask>=3.1,<4"]}


@pytest.mark.parametrize("command", sorted(SERVICE["project"]["scripts"]))
def test_each_console_command_runs_the_script_of_its_name(command, monkeypatch):
    """``identity-NAME`` prints what ``python scripts/NAME.py`` prints (their --help, in process)."""
    module, _, function = SERVICE["project"]["scripts"][command].partition(":")
    tool = command.removeprefix("identity-").replace("-", "_")
    assert module == "identity_scripts" and function == f"{tool}_command"
    script = ROOT / "scripts" / f"{tool}.py"
    assert 'if __name__ == "__main__":' in script.read_text("utf-8")
    import scripts

    def help_of(run) -> str:
        monkeypatch.setattr(sys, "argv", [str(script), "--help"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            run()
        assert exited.value.code in (0, None)
        return out.getvalue()

    by_path = help_of(lambda: runpy.run_path(str(script), run_name="__main__"))
    assert by_path.startswith("usage:")
    assert help_of(getattr(scripts, function)) == by_path


def copy_of_checkout(target: Path) -> Path:
    """The files the two distributions are built from, copied (the build writes beside its sources)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in ("identity", "scripts", "packages"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    return target


def clean_environment() -> dict[str, str]:
    """No PYTHONPATH (conftest points it at this checkout) and no virtualenv of ours."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def run(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=clean_environment(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source = copy_of_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("wheels")
    for project in (source / "packages" / "identity-verify", source):
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, project, cwd=source)
    return {path.name.split("-")[0]: path for path in out.glob("*.whl")}


def fresh_venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path, cwd=path.parent)
    return path / "bin" / "python"


PROBE = r"""
import importlib.util, json, sys
import identity.verify
from pathlib import Path

from identity.verify import DecryptionKey, HttpResponse, RequestsFetcher, TokenVerifier, VerificationError

work = Path(sys.argv[1])

class StaticFetcher:
    def get(self, url):
        return HttpResponse(200, (work / "jwks.json").read_bytes())

    def post_form(self, url, form, *, basic_auth):
        raise AssertionError("no introspection here")

verifier = TokenVerifier(issuer="https://id.example.org", audience="https://records.example.org",
                         decryption_keys=[DecryptionKey.from_file(work / "audience.key.pem")],
                         jwks_uri="https://id.example.org/.well-known/jwks.json", fetcher=StaticFetcher())
token = verifier.verify((work / "token").read_text())
try:
    verifier.verify((work / "forged").read_text())
    forged = "accepted"
except VerificationError as exc:
    forged = type(exc).__name__
try:
    import identity.verify.flask
    flask_adapter = "imported"
except ImportError as exc:
    flask_adapter = exc.name
RequestsFetcher()
print(json.dumps({
    "pseudonym": token.pseudonym, "scopes": sorted(token.scopes), "forged": forged,
    "flask": importlib.util.find_spec("flask") is not None, "flask_adapter": flask_adapter,
    "server": [m for m in ("identity.app", "identity.store", "pymongo", "authlib") if importlib.util.find_spec(m)],
    "verify_file": identity.verify.__file__,
}))
"""


def write_token_material(work: Path) -> None:
    """An audience key, the issuer's JWKS and two access tokens in the service's format (one forged)."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwe
    from joserfc.jwe import JWERegistry
    from joserfc.jwk import RSAKey

    from identity.verify import thumbprint

    signing, audience, forger = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
    (work / "audience.key.pem").write_bytes(audience.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    jwk = RSAKey.import_key(signing.public_key()).as_dict(private=False)
    (work / "jwks.json").write_text(json.dumps({"keys": [jwk | {"kid": thumbprint(signing), "alg": "RS256",
                                                                "use": "sig"}]}))
    now = int(time.time())
    claims = {"iss": "https://id.example.org", "sub": "mfrggzdfmztwq2lknnwg23tpoa",
              "aud": "https://records.example.org", "exp": now + 600, "iat": now, "jti": "jti-1",
              "client_id": "app-1", "scope": "records:read"}
    for name, key in (("token", signing), ("forged", forger)):  # the forger claims the real signing kid
        inner = jwt.encode(claims, key, algorithm="RS256", headers={"typ": "at+jwt", "kid": thumbprint(signing)})
        header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": thumbprint(audience)}
        registry = JWERegistry(algorithms=["RSA-OAEP-256", "A256GCM"])
        (work / name).write_text(jwe.encrypt_compact(header, inner, RSAKey.import_key(audience.public_key()),
                                                     registry=registry))


def test_identity_verify_installs_alone_and_verifies_tokens_without_flask(wheels, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    run(python, "-m", "pip", "install", "--quiet", "--constraint", ROOT / "requirements.txt",
        wheels["identity_verify"], cwd=tmp_path)
    write_token_material(tmp_path)
    (tmp_path / "probe.py").write_text(PROBE)
    result = json.loads(run(python, tmp_path / "probe.py", tmp_path, cwd=tmp_path).stdout)
    assert result["pseudonym"] == "mfrggzdfmztwq2lknnwg23tpoa" and result["scopes"] == ["records:read"]
    assert result["forged"] == "BadSignature"
    assert result["flask"] is False and result["flask_adapter"] == "flask"  # the extra is not installed
    assert result["server"] == []
    assert result["verify_file"].startswith(str(tmp_path / "venv"))
    installed = run(python, "-m", "pip", "list", "--format=json", cwd=tmp_path).stdout
    names = {entry["name"].lower() for entry in json.loads(installed)}
    assert "identity-verify" in names and not names & {"flask", "werkzeug", "pymongo", "authlib", "identity-service"}


def test_both_distributions_share_the_identity_package(wheels, tmp_path):
    """Installed together (the service requires identity-verify), ``identity`` is the service's package and
    ``identity.verify`` comes from identity-verify: no file has two owners."""
    python = fresh_venv(tmp_path / "venv")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheels["identity_verify"], wheels["identity_service"],
        cwd=tmp_path)
    probe = ("import importlib.util, json; s = importlib.util.find_spec('identity'); "
             "v = importlib.util.find_spec('identity.verify'); c = importlib.util.find_spec('identity_scripts'); "
             "print(json.dumps([s.origin, v.origin, c.origin]))")
    origins = [Path(p) for p in json.loads(run(python, "-c", probe, cwd=tmp_path).stdout)]
    site = origins[0].parent.parent
    assert origins == [site / "identity" / "__init__.py", site / "identity" / "verify" / "__init__.py",
                       site / "identity_scripts" / "__init__.py"]
    assert (site / "identity_scripts" / "breach_contact.py").is_file()
    records = {}
    for dist in site.glob("identity_*.dist-info"):
        records[dist.name.split("-")[0]] = {line.split(",")[0] for line in (dist / "RECORD").read_text().splitlines()
                                            if line.startswith("identity")}
    assert "identity/verify/__init__.py" in records["identity_verify"]
    assert "identity/__init__.py" in records["identity_service"]
    assert not records["identity_verify"] & records["identity_service"]
    assert (site.parent.parent.parent / "bin" / "identity-breach-contact").exists()
