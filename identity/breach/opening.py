"""Opening sealed e-mails (libsodium sealed boxes) in a pool of worker processes.

Opening costs one X25519 key agreement (~70 µs here), so it is the breach run's bottleneck and is
spread over one worker per core. Chunks go out in order and come back in order, and no more than
``window`` chunks are ever in flight, so memory stays bounded however long the list is.

Workers receive only the DPO key's raw bytes (at start-up, through a pipe) and sealed values; they
never touch the store or the output. The format is ``identity.sealing``'s (``sb2.``/``sb1.`` +
base64url). Each value comes back as ``(pseudonym, e-mail)`` (``identity.sealing.Unsealed``: the
pseudonym an sb2 value was sealed for, None for an sb1 value) or None; the caller compares that
pseudonym with the row's (``resolve.check_opened``, ``reseal``): nothing here knows which row a
value came from.

``open_all`` calls libsodium through PyNaCl's own cffi handle (``identity._compat.sodium``; PyNaCl is pinned)
with one plaintext buffer per batch, wiped when the batch is done: PyNaCl's wrapper (argument
checks, a fresh buffer and a copy per call) and ``base64.urlsafe_b64decode`` cost about a fifth of
an open on top of the key agreement. ``unseal_one`` is the same operation through the public API.
"""

from __future__ import annotations

import binascii
import multiprocessing
import os
import signal
from collections import deque
from typing import Any, Generic, Sequence, TypeVar

from nacl import bindings
from nacl.exceptions import CryptoError

from .._compat import sodium
from ..sealing import BOUND_PREFIX, PREFIX_LENGTH, UNBOUND_PREFIX, SealError, Unsealed, split_sealed, unseal

T = TypeVar("T")
_KEY: tuple[bytes, bytes] | None = None  # (public, private) inside a worker process only
ffi, lib = sodium.ffi, sodium.lib


def unseal_one(sealed: str, public: bytes, private: bytes) -> Unsealed | None:
    """(pseudonym, e-mail) inside ``sealed``, or None if it is malformed or not sealed to this key."""
    try:
        bound, data = split_sealed(sealed)
        return unseal(bindings.crypto_box_seal_open(data, public, private), bound=bound)
    except (SealError, ValueError, CryptoError):
        return None


def open_one(sealed: str, public: bytes, private: bytes) -> str | None:
    """The e-mail inside ``sealed`` (either scheme; an sb2 value's binding is NOT checked), or None."""
    opened = unseal_one(sealed, public, private)
    return None if opened is None else opened[1]


SEAL_BYTES = bindings.crypto_box_SEALBYTES
MAX_PLAINTEXT = 1024  # the buffer: an sb2 plaintext is at most 4 + 26 + 1 + 254 bytes
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def open_all(values: Sequence[str], public: bytes, private: bytes) -> list[Unsealed | None]:
    """``[unseal_one(v, public, private) for v in values]``, without PyNaCl's per-call wrapper."""
    if len(public) != bindings.crypto_box_PUBLICKEYBYTES or len(private) != bindings.crypto_box_SECRETKEYBYTES:
        raise ValueError("invalid key pair")
    plaintext = ffi.new("unsigned char[]", MAX_PLAINTEXT)
    seal_open, buffer, a2b = lib.crypto_box_seal_open, ffi.buffer, binascii.a2b_base64
    opened: list[Unsealed | None] = []
    append = opened.append
    try:
        for sealed in values:
            if sealed.startswith(BOUND_PREFIX):
                bound = True
            elif sealed.startswith(UNBOUND_PREFIX):
                bound = False
            else:
                append(None)
                continue
            try:
                body = sealed[PREFIX_LENGTH:].encode("ascii").translate(_URLSAFE)
                data = a2b(body + b"=" * (-len(body) % 4))
                size = len(data) - SEAL_BYTES
                if size > MAX_PLAINTEXT:  # not an e-mail we sealed; the public API opens it all the same
                    append(unseal_one(sealed, public, private))
                    continue
                if size < 0 or seal_open(plaintext, data, len(data), public, private) != 0:
                    append(None)
                    continue
                append(unseal(buffer(plaintext, size)[:], bound=bound))
            except (ValueError, SealError):  # binascii.Error, UnicodeEncodeError are ValueErrors
                append(None)
    finally:
        lib.sodium_memzero(plaintext, MAX_PLAINTEXT)
    return opened


def key_pair(private: bytes) -> tuple[bytes, bytes]:
    return bindings.crypto_scalarmult_base(private), private


def _install_key(private: bytes) -> None:
    """Worker start-up: keep the key; leave Ctrl-C to the parent, which stops the pool."""
    global _KEY
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _KEY = key_pair(private)


def _open_in_worker(values: list[str]) -> list[Unsealed | None]:
    assert _KEY is not None, "worker started without the DPO key"
    return open_all(values, *_KEY)


class _Done:
    """An already-computed result with the ``AsyncResult`` methods the pool uses."""

    def __init__(self, value: list[Unsealed | None]) -> None:
        self._value = value

    def ready(self) -> bool:
        return True

    def get(self) -> list[Unsealed | None]:
        return self._value


def _context() -> Any:
    """Fork: workers start in milliseconds, share the parent's pages and need no re-import of the
    script (spawn and forkserver re-run ``__main__``). ``resolve`` forks them before it touches the
    store, so no database client threads exist at that moment. Spawn where fork is unavailable."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


class OpeningPool(Generic[T]):
    """Opens chunks of sealed values with ``workers`` processes (0: in this process), in order.

    Use as a context manager; ``submit`` returns the chunks finished so far (oldest first) and
    blocks while ``window`` chunks are in flight; ``finish`` returns the rest.
    """

    def __init__(self, private: bytes, *, workers: int, window: int | None = None) -> None:
        self._workers = max(0, workers)
        self._window = window or max(2, 3 * self._workers)
        self._pending: deque[tuple[T, Any]] = deque()
        self._pool: Any = None
        self._inline_key: tuple[bytes, bytes] | None = None
        if self._workers:
            self._pool = _context().Pool(self._workers, initializer=_install_key, initargs=(private,))
        else:
            self._inline_key = key_pair(private)

    def __enter__(self) -> OpeningPool[T]:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None
        self._pending.clear()

    def _start(self, values: list[str]) -> Any:
        if self._pool is None:
            assert self._inline_key is not None
            return _Done(open_all(values, *self._inline_key))
        return self._pool.apply_async(_open_in_worker, (values,))

    def submit(self, tag: T, values: list[str]) -> list[tuple[T, list[Unsealed | None]]]:
        """Queue one chunk; return every chunk finished meanwhile, in submission order."""
        self._pending.append((tag, self._start(values)))
        done = []
        while self._pending and (len(self._pending) > self._window or self._pending[0][1].ready()):
            tag_done, result = self._pending.popleft()
            done.append((tag_done, result.get()))
        return done

    def finish(self) -> list[tuple[T, list[Unsealed | None]]]:
        """Wait for every chunk still in flight."""
        done = [(tag, result.get()) for tag, result in self._pending]
        self._pending.clear()
        return done


def default_workers() -> int:
    return os.cpu_count() or 1
