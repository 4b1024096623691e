"""gunicorn settings for production: ``gunicorn -c gunicorn.conf.py --bind 0.0.0.0:8000 wsgi:app``.

Measured with ``make bench`` (BENCHMARKS.md). gunicorn also reads this file by itself when started from
the repository root; command-line options override it.
"""

import multiprocessing
import os

# Token issuance is CPU-bound (one RSA signature per token). Sync workers: the kernel hands every new
# connection to the next free worker, which keeps the latency tail tight (p99 about 1.4 x p50 under
# load, against about 3 x with gthread keep-alive workers, which pin each connection to one worker).
# Two per core: a sync worker idles while it drains a closing connection, and the second one fills
# that gap. WEB_CONCURRENCY overrides the count.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count())
worker_class = "sync"
threads = 1
keepalive = 5  # only used with --threads > 1 (gthread), e.g. when upstream login calls dominate

# The app (settings, key material, parsed keys) is built once in the master and shared by the workers;
# create_app leaves no store connection open, so none crosses the fork.
preload_app = True

# Every worker touches its heartbeat file on each request: keep it in memory, not on the disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
