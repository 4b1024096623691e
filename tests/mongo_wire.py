"""A MongoDB server on loopback that answers the handshake at once and every other command late, or never.

No MongoDB server can be installed here, and mongomock has no network: this speaks just enough of the
wire protocol (OP_QUERY for the first handshake, OP_MSG after it) for pymongo to select it as a standalone
server, so that what the driver does against a server that has stopped answering can be tried for real.
"""

from __future__ import annotations

import datetime
import socket
import struct
import threading
from typing import Any, Iterator

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HANDSHAKE = frozenset({"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo", "buildinfo"})
CURSOR_COMMANDS = frozenset({"find", "aggregate", "listIndexes"})


class SlowMongo:
    """Serves on ``uri`` until closed; commands other than the handshake are answered after ``delay`` seconds
    (``None``: never, the connection is held open and silent)."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.commands: list[str] = []  # names of the commands received after the handshake
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def uri(self, options: str = "") -> str:
        extra = f"&{options}" if options else ""
        return f"mongodb://127.0.0.1:{self.port}/identity?directConnection=true&serverSelectionTimeoutMS=2000{extra}"

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> SlowMongo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the accept timed out: look at _closed again
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            for request_id, op_code, body in self._messages(conn):
                command, db = self._command(op_code, body)
                name = next(iter(command), "")
                if name not in HANDSHAKE:
                    self.commands.append(name)
                    if self._closed.wait(1e9 if self.delay is None else self.delay):
                        return
                reply = self._reply(name, command, db)
                if op_code == OP_QUERY:
                    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
                    out_code = OP_REPLY
                else:
                    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    out_code = OP_MSG
                conn.sendall(struct.pack("<iiii", 16 + len(payload), 0, request_id, out_code) + payload)

    def _messages(self, conn: socket.socket) -> Iterator[tuple[int, int, bytes]]:
        buffer = b""
        while not self._closed.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 16:
                length, request_id, _, op_code = struct.unpack_from("<iiii", buffer)
                if len(buffer) < length:
                    break
                yield request_id, op_code, buffer[16:length]
                buffer = buffer[length:]

    @staticmethod
    def _command(op_code: int, body: bytes) -> tuple[dict[str, Any], str]:
        if op_code == OP_QUERY:  # flags, full collection name (cstring), skip, return, query
            end = body.index(b"\x00", 4)
            namespace = body[4:end].decode()
            return bson.decode(body[end + 9:][:struct.unpack_from("<i", body, end + 9)[0]]), namespace.split(".")[0]
        # OP_MSG: flag bits, then sections; the command is the kind-0 section
        offset = 4
        command: dict[str, Any] = {}
        while offset < len(body):
            kind = body[offset]
            size = struct.unpack_from("<i", body, offset + 1)[0]
            if kind == 0:
                command = bson.decode(body[offset + 1:offset + 1 + size])
            offset += 1 + size
        return command, str(command.get("$db", "admin"))

    @staticmethod
    def _reply(name: str, command: dict[str, Any], db: str) -> dict[str, Any]:
        if name in ("hello", "ismaster", "isMaster"):
            return {"helloOk": True, "isWritablePrimary": True, "ismaster": True, "ok": 1.0,
                    "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000,
                    "maxWriteBatchSize": 100_000, "localTime": datetime.datetime.now(datetime.timezone.utc),
                    "logicalSessionTimeoutMinutes": 30, "connectionId": 1, "minWireVersion": 0,
                    "maxWireVersion": 21, "readOnly": False}
        if name in CURSOR_COMMANDS:
            collection = command[name] if isinstance(command[name], str) else "$cmd.aggregate"
            return {"cursor": {"id": 0, "ns": f"{db}.{collection}", "firstBatch": []}, "ok": 1.0}
        if name == "createIndexes":
            return {"numIndexesBefore": 1, "numIndexesAfter": 1, "ok": 1.0}
        return {"n": 0, "nModified": 0, "ok": 1.0}
