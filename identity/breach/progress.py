"""A one-line progress bar on standard error, drawn only when standard error is a terminal."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

REDRAW_SECONDS = 0.2
WIDTH = 30


class ProgressBar:
    """``update(lines_done)`` redraws at most five times a second; ``close`` ends the line."""

    def __init__(self, total: int | None, *, stream: TextIO | None = None, enabled: bool | None = None,
                 start_at: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream or sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._total = total
        self._clock = clock
        self._started = clock()
        self._start_at = start_at
        self._drawn_at = 0.0
        self._done = start_at

    def update(self, done: int, *, force: bool = False) -> None:
        self._done = done
        now = self._clock()
        if not self.enabled or (not force and now - self._drawn_at < REDRAW_SECONDS):
            return
        self._drawn_at = now
        self._stream.write("\r" + self.render(now) + "\x1b[K")
        self._stream.flush()

    def render(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = (self._done - self._start_at) / elapsed
        text = f"{self._done:,} lines  {rate:,.0f}/s"
        if self._total:
            share = min(self._done / self._total, 1.0)
            filled = int(share * WIDTH)
            left = (self._total - self._done) / rate if rate > 0 else 0
            text = (f"[{'#' * filled}{'.' * (WIDTH - filled)}] {share:6.1%}  {self._done:,}/{self._total:,} lines"
                    f"  {rate:,.0f}/s  ETA {int(left) // 60}:{int(left) % 60:02d}")
        return text

    def close(self) -> None:
        if self.enabled:
            self.update(self._done, force=True)
            self._stream.write("\n")
            self._stream.flush()
