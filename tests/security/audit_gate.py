"""``make audit``: pip-audit over the pinned dependencies, failing on a known vulnerability.

What is audited: every package installed in the project's virtualenv by ``requirements-dev.txt``
(which pins ``requirements.txt``), as ``pip freeze`` lists them, transitive dependencies included.
pip-audit runs from its own virtualenv (``requirements-audit.txt``) so that its dependencies are
neither audited nor mixed into the project's.

The vulnerability data comes from the PyPI JSON API (pip-audit's default), else from OSV. When
neither can be reached, or PyPI answers for none of the packages (a mirror without the JSON API),
nothing was audited: the target says so and exits 0, so CI on a machine without that access is not
failed by it, unless ``AUDIT_STRICT=1`` (then it exits 2). Known vulnerabilities exit 1.

    python -m tests.security.audit_gate [--tools DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOOLS_REQUIREMENTS = REPO / "requirements-audit.txt"
SERVICES = ("pypi", "osv")
TIMEOUT_SECONDS = 300
NETWORK_TROUBLE = re.compile(
    r"(ConnectionError|Max retries exceeded|Failed to establish|Name or service not known|Could not resolve|"
    r"Temporary failure in name resolution|timed out|Network is unreachable|Connection refused|SSLError|"
    r"ProxyError|RemoteDisconnected|HTTPError|50[234] )", re.IGNORECASE)

PASS, FAIL, UNREACHABLE = "pass", "fail", "unreachable"


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


def verdict(report: dict[str, Any] | None, returncode: int, stderr: str) -> Verdict:
    """What one pip-audit run means: vulnerabilities found, all clear, or no data to judge by."""
    if report is None:
        if NETWORK_TROUBLE.search(stderr):
            last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            return Verdict(UNREACHABLE, f"the vulnerability service could not be reached: {last[0][:300]}")
        return Verdict(FAIL, f"pip-audit failed (exit {returncode}): {stderr.strip()[-500:]}")
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    if vulnerable:
        lines = [f"{d['name']} {d['version']}: " + ", ".join(
            f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['no release yet'])})" for v in d["vulns"])
            for d in vulnerable]
        return Verdict(FAIL, "known vulnerabilities:\n  " + "\n  ".join(lines))
    skipped = [d for d in dependencies if d.get("skip_reason")]
    if not dependencies or len(skipped) == len(dependencies):
        reason = skipped[0]["skip_reason"] if skipped else "no dependency was audited"
        return Verdict(UNREACHABLE, f"no package could be audited ({len(skipped)} skipped), e.g.: {reason}")
    note = f" ({len(skipped)} not found by the service: {', '.join(d['name'] for d in skipped)})" if skipped else ""
    return Verdict(PASS, f"no known vulnerabilities in {len(dependencies) - len(skipped)} packages{note}")


def ensure_tools(tools: Path) -> Path | None:
    """pip-audit in its own virtualenv; None if it cannot be installed (no registry access)."""
    executable = tools / "bin" / "pip-audit"
    if executable.exists():
        return executable
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(tools / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r",
                        str(TOOLS_REQUIREMENTS)], check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        print(f"make audit: cannot install pip-audit: {str(detail).strip()[-300:]}", file=sys.stderr)
        return None
    return executable


def frozen_requirements(directory: Path) -> Path:
    """The project's installed packages, pinned (``pip freeze``)."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            check=True, capture_output=True, text=True, timeout=120).stdout
    path = directory / "requirements-frozen.txt"
    path.write_text(frozen)
    return path


def audit(pip_audit: Path, requirements: Path, service: str, directory: Path) -> Verdict:
    output = directory / f"audit-{service}.json"
    try:
        run = subprocess.run([str(pip_audit), "--requirement", str(requirements), "--no-deps", "--disable-pip",
                              "--progress-spinner", "off", "--vulnerability-service", service, "--format", "json",
                              "--output", str(output)], capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return Verdict(UNREACHABLE, f"pip-audit ({service}) timed out after {TIMEOUT_SECONDS} s")
    try:
        report = json.loads(output.read_text()) if output.exists() and output.stat().st_size else None
    except ValueError:
        report = None
    return verdict(report, run.returncode, run.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", type=Path, default=REPO / ".venv" / "audit-tools")
    args = parser.parse_args(argv)
    strict = os.environ.get("AUDIT_STRICT") == "1"
    pip_audit = ensure_tools(args.tools)
    if pip_audit is None:
        print("make audit: SKIPPED: pip-audit could not be installed, nothing was audited")
        return 2 if strict else 0
    reasons = []
    with tempfile.TemporaryDirectory(prefix="identity-audit-") as scratch:
        directory = Path(scratch)
        requirements = frozen_requirements(directory)
        for service in SERVICES:
            result = audit(pip_audit, requirements, service, directory)
            if result.status == PASS:
                print(f"make audit: {service}: {result.message}")
                return 0
            if result.status == FAIL:
                print(f"make audit: {service}: {result.message}", file=sys.stderr)
                return 1
            reasons.append(f"{service}: {result.message}")
    print("make audit: SKIPPED: no vulnerability database could be used from this machine, nothing was audited:")
    for reason in reasons:
        print(f"  - {reason}")
    return 2 if strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
