"""``make audit``'s reading of pip-audit: a vulnerability fails, missing data skips loudly, never a false pass."""

from __future__ import annotations

from tests.security.audit_gate import FAIL, PASS, UNREACHABLE, verdict

FLASK = {"name": "flask", "version": "3.1.3", "vulns": []}
VULNERABLE = {"name": "jinja2", "version": "3.1.0", "vulns": [
    {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"], "description": "xss"}]}
NOT_FOUND = {"name": "authlib", "skip_reason": "Dependency not found on PyPI and could not be audited: authlib (1.9.9)"}


def test_a_known_vulnerability_fails_and_names_the_fix():
    result = verdict({"dependencies": [FLASK, VULNERABLE], "fixes": []}, 1, "")
    assert result.status == FAIL and "jinja2 3.1.0: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in result.message


def test_all_clear_passes():
    assert verdict({"dependencies": [FLASK], "fixes": []}, 0, "").status == PASS


def test_a_mirror_without_vulnerability_data_is_not_a_pass():
    """pip-audit says "No known vulnerabilities found" when it could audit nothing: that is no data."""
    result = verdict({"dependencies": [NOT_FOUND, {**NOT_FOUND, "name": "flask"}], "fixes": []}, 0, "")
    assert result.status == UNREACHABLE and "2 skipped" in result.message
    assert verdict({"dependencies": [], "fixes": []}, 0, "").status == UNREACHABLE


def test_some_packages_unknown_to_the_service_still_pass_with_a_note():
    result = verdict({"dependencies": [FLASK, NOT_FOUND], "fixes": []}, 0, "")
    assert result.status == PASS and "authlib" in result.message


def test_no_report_and_a_network_error_is_unreachable():
    stderr = ("requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', port=443): "
              "Max retries exceeded")
    assert verdict(None, 1, stderr).status == UNREACHABLE


def test_no_report_for_another_reason_fails():
    assert verdict(None, 1, "ERROR: invalid requirement: 'flask=='").status == FAIL
