"""gunicorn settings, the reference server (production starts ``scripts/serve.py``): ``gunicorn -c
gunicorn.conf.py --bind 0.0.0.0:8000 wsgi:app``.

Measured with ``make bench`` (BENCHMARKS.md). gunicorn also reads this file by itself when started from
the repository root; command-line options override it.
"""

import multiprocessing
import os

# Token issuance is CPU-bound (one RSA signature per token): one sync worker per core. Sync workers let
# the kernel hand every new connection to the next free worker, which keeps the latency tail tight (p99
# about 1.4 x p50 under load, against about 3 x with gthread keep-alive workers, which pin each connection
# to one worker). Measured side by side (BENCHMARKS.md): one worker per core serves about 15 % more tokens
# per core and per second than two, which spend the difference switching between each other.
# WEB_CONCURRENCY overrides the count: raise it (or use --threads) where upstream login calls, which wait
# on the network, are a large share of the traffic. With more than one worker, production needs shared
# rate-limit counters (IDENTITY_RATE_LIMIT_STORAGE_URI): nworkers_changed below refuses per-process ones.
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "sync"
threads = 1
keepalive = 5  # only used with --threads > 1 (gthread), e.g. when upstream login calls dominate

# gunicorn's pure-Python HTTP parser, named so that installing gunicorn-h1c never switches it silently.
# The C parser (gunicorn-h1c 0.6.9, the newest reachable here) served about 8 % more tokens per core, but it
# accepts bare-LF line endings and obsolete header folding, which the Python parser refuses with 400: a
# parser more lenient than the proxy in front of it is how requests get smuggled. Tested in
# tests/security/test_http_parsing.py.
http_parser = "python"

# The app (settings, key material, parsed keys) is built once in the master and shared by the workers;
# create_app leaves no store connection open, so none crosses the fork.
preload_app = True

# Every worker touches its heartbeat file on each request: keep it in memory, not on the disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def nworkers_changed(server, new_value, old_value):
    """Refuse per-process rate-limit counters in production with several workers (identity.web.ratelimit).

    gunicorn calls this with the configured count before it loads the app (``old_value`` None): refuse
    to start with one line on stderr. At run time (TTIN/TTOU signals) a refused count is undone.
    """
    from identity.web.ratelimit import exit_if_refused, worker_count_refusal

    if old_value is None:
        exit_if_refused(new_value)
        return
    reason = worker_count_refusal(new_value)
    if reason:
        server.log.error("%s (keeping %d)", reason, old_value)
        server.num_workers = old_value
