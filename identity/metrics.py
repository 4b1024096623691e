"""Prometheus metrics: what an operator watches on a dashboard (docs/deploy.md, "Metrics").

The metrics are module-level, as Prometheus clients expect: under ``scripts/serve.py`` every worker process
writes its own values to a memory-mapped file in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, chosen before this module is imported), and the exporter (``identity.metrics_exporter``)
adds up every process's files at each scrape. Without that directory (tests, scripts) they count in-process.

Labels hold only names fixed by the code or the operator's registrations: a route template, an HTTP method
from a fixed list, a status code, a grant type, an audience URI, an outcome word, a store operation. Never a
pseudonym, subject, e-mail address, token, client secret or client address (tests/test_metrics.py scrapes
after a full login and checks).

State that is not an event (the active signing key's age, whether a next key is published, the last
retention purge, whether the store answers) is read at scrape time by ``StateCollector``, in the exporter.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:  # pragma: no cover
    from .store.base import Store

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "identity"
REGISTRY = CollectorRegistry(auto_describe=True)  # this process's metrics (in-process mode)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
UNMATCHED_ROUTE = "unmatched"
REQUEST_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

F = TypeVar("F", bound=Callable[..., Any])

HTTP_REQUESTS = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by route template, method and status",
                        ("route", "method", "status"), registry=REGISTRY)
HTTP_SECONDS = Histogram(f"{PREFIX}_http_request_duration_seconds", "Time to answer an HTTP request, by route",
                         ("route",), buckets=REQUEST_BUCKETS, registry=REGISTRY)
TOKENS_ISSUED = Counter(f"{PREFIX}_tokens_issued", "Access tokens issued, by grant type and audience",
                        ("grant", "audience"), registry=REGISTRY)
LOGINS = Counter(f"{PREFIX}_logins", "Sign-ins through the upstream IdP, by outcome "
                 "(success, refused, denied, unavailable, error)", ("outcome",), registry=REGISTRY)
UPSTREAM_SECONDS = Histogram(f"{PREFIX}_upstream_request_duration_seconds",
                             "Calls to the upstream IdP (discovery, token, jwks), by call", ("call",),
                             buckets=UPSTREAM_BUCKETS, registry=REGISTRY)
UPSTREAM_ERRORS = Counter(f"{PREFIX}_upstream_errors", "Upstream IdP calls that failed, by call and error "
                          "(timeout, connection, http_4xx, http_5xx, other)", ("call", "error"), registry=REGISTRY)
RATE_LIMITED = Counter(f"{PREFIX}_rate_limit_refusals", "Requests refused by a rate limit (429), by limit",
                       ("endpoint",), registry=REGISTRY)
STORE_SECONDS = Histogram(f"{PREFIX}_store_operation_duration_seconds", "Store operations, by backend and operation",
                          ("backend", "operation"), buckets=STORE_BUCKETS, registry=REGISTRY)
STORE_ERRORS = Counter(f"{PREFIX}_store_errors", "Store operations that failed, by backend, operation and error "
                       "(unavailable, duplicate_key)", ("backend", "operation", "error"), registry=REGISTRY)
AUDIT_APPENDS = Counter(f"{PREFIX}_audit_appends", "Records appended to the audit chain, by action",
                        ("action",), registry=REGISTRY)
AUDIT_HEAD_FAILURES = Counter(f"{PREFIX}_audit_head_export_failures",
                              "Audit records stored whose head could not be exported (the action answered 503)",
                              registry=REGISTRY)


# -- recording (one call at each place an event happens) -------------------------------------------

def method_label(method: str) -> str:
    """A request method as a label: the standard ones, anything else ``OTHER`` (bounded)."""
    return method if method in KNOWN_METHODS else "OTHER"


_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labels → children: no lookup per request
MAX_REQUEST_SERIES = 4096  # routes × methods × statuses is small; the bound only guards against a bug


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        series = (HTTP_REQUESTS.labels(route, method_label(method), str(status)), HTTP_SECONDS.labels(route))
        if len(_REQUEST_SERIES) < MAX_REQUEST_SERIES:
            _REQUEST_SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


def count_token_issued(grant: str, audience: str) -> None:
    TOKENS_ISSUED.labels(grant, audience).inc()


def count_login(outcome: str) -> None:
    LOGINS.labels(outcome).inc()


def count_rate_limit_refusal(endpoint: str) -> None:
    RATE_LIMITED.labels(endpoint).inc()


def count_audit_append(action: str) -> None:
    AUDIT_APPENDS.labels(action).inc()


def count_audit_head_failure() -> None:
    AUDIT_HEAD_FAILURES.inc()


@contextmanager
def upstream_call(call: str) -> Iterator[Callable[[str], None]]:
    """Time one upstream call; the caller reports a failed answer with the yielded ``fail(error)``.

    An exception leaving the block counts as ``timeout``, ``connection`` or ``other`` by its type.
    """
    started = time.perf_counter()
    failed: list[str] = []
    try:
        yield failed.append
    except Exception as exc:
        name = type(exc).__name__
        failed.append("timeout" if "Timeout" in name else "connection" if "Connection" in name else "other")
        raise
    finally:
        UPSTREAM_SECONDS.labels(call).observe(time.perf_counter() - started)
        if failed:
            UPSTREAM_ERRORS.labels(call, failed[0]).inc()


def store_operation(backend: str, operation: str) -> Callable[[F], F]:
    """Decorate a store method: its duration, and its failures (``StoreUnavailable``, ``DuplicateKeyError``)."""
    from .store.base import DuplicateKeyError, StoreUnavailable  # the store imports this module

    seconds = STORE_SECONDS.labels(backend, operation)

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            except DuplicateKeyError:
                STORE_ERRORS.labels(backend, operation, "duplicate_key").inc()
                raise
            except StoreUnavailable:
                STORE_ERRORS.labels(backend, operation, "unavailable").inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - started)

        return timed  # type: ignore[return-value]  # the same signature as fn, which mypy cannot see

    return decorate


# -- state read at scrape time -------------------------------------------------------------------

class StateCollector:
    """Gauges read when Prometheus scrapes: signing keys (from the manifest on disk, which every worker
    follows within a second), the last retention purge and whether the store answers."""

    def __init__(self, *, keys_dir: Path, store: Store | None, clock: Callable[[], float] = time.time) -> None:
        self._keys_dir = Path(keys_dir)
        self._store = store
        self._clock = clock

    def describe(self) -> list[Any]:
        return []  # collected only when scraped: nothing is read at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._keys()
        if self._store is not None:
            yield from self._store_state(self._store)

    def _keys(self) -> Iterator[GaugeMetricFamily]:
        from .keys.lifecycle import ACTIVE, NEXT, describe

        now = self._clock()
        try:
            keys = describe(self._keys_dir)
        except Exception:  # noqa: BLE001 - an unreadable manifest: the gauges are absent, readiness says why
            return
        active = [k for k in keys if k.get("state") == ACTIVE]
        since = active[0].get("activated_at", active[0].get("created_at")) if active else None
        age = GaugeMetricFamily(f"{PREFIX}_signing_key_age_seconds",
                                "Seconds since the active signing key started signing")
        if isinstance(since, (int, float)):
            age.add_metric([], max(0.0, now - since))
        yield age
        yield GaugeMetricFamily(f"{PREFIX}_signing_key_next_published",
                                "1 when a next signing key is published in the JWKS (a rotation can happen safely)",
                                value=1 if any(k.get("state") == NEXT for k in keys) else 0)
        states = GaugeMetricFamily(f"{PREFIX}_signing_keys", "Signing keys in the JWKS, by state", labels=["state"])
        for state in ("next", "active", "retired"):
            states.add_metric([state], sum(1 for k in keys if k.get("state") == state))
        yield states

    def _store_state(self, store: Store) -> Iterator[GaugeMetricFamily]:
        from .retention import STALE_AFTER, purge_status
        from .store.base import StoreError

        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the store answered this scrape's ping")
        try:
            store.ping()
            status = purge_status(store, self._clock())
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        last = GaugeMetricFamily(f"{PREFIX}_retention_last_purge_timestamp_seconds",
                                 "When the retention purge last completed (Unix time; absent: never)")
        if status.last_finished_at is not None:
            last.add_metric([], status.last_finished_at)
        yield last
        yield GaugeMetricFamily(f"{PREFIX}_retention_purge_stale",
                                f"1 when the last purge is older than {STALE_AFTER} s (or never ran)",
                                value=1 if status.stale else 0)


# -- scraping ----------------------------------------------------------------------------------

def multiprocess_dir() -> str | None:
    """The directory of every worker's metric files, when running under several processes."""
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry(state: StateCollector | None = None) -> CollectorRegistry:
    """What ``/metrics`` shows: every process's values (multiprocess mode) or this one's, plus ``state``."""
    directory = multiprocess_dir()
    if directory is None:
        registry = REGISTRY
        if state is not None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Forward(REGISTRY))
    else:
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=directory)
    if state is not None:
        registry.register(state)
    return registry


class _Forward:
    """Another registry's metrics inside this one (the in-process registry plus the state gauges)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        return iter(self._registry.collect())


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(registry)
