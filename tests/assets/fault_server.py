"""A real HTTP server on 127.0.0.1 (stdlib ThreadingHTTPServer in a thread) for download tests.

It serves byte strings at URL paths (the query is ignored, like an object store ignoring versionId for
the current version), honours `Range: bytes=N-` with 206 unless told otherwise, and injects faults from a
per-path queue, one fault per request:

* ("cut", n): announce the full length, send only n bytes, close the connection;
* ("status", code): answer with that HTTP status and a short body;
* ("corrupt",): flip bytes in the middle, length unchanged;
* ("norange",): ignore Range, send 200 and the whole file;
* ("length", n): announce Content-Length n but send the real bytes, then close;
* ("slow", seconds): send normally but sleep between 64 KiB pieces;
* ("endless",): a chunked response without Content-Length that repeats the file until the client hangs up.

Every request is logged: path, Range and If-Range headers, status, body bytes actually written.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from gtacli.io.hashing import crc64_xz


@dataclass
class ServedFile:
    data: bytes
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    content_md5: bool = False  # send Content-MD5 of the whole file on 200 responses
    crc64: Optional[int] = None  # value for x-oss-hash-crc64ecma (None: header absent)
    faults: List[Tuple[Any, ...]] = field(default_factory=list)
    sticky_fault: Optional[Tuple[Any, ...]] = None  # applied to every request once the queue is empty


class FaultServer:
    def __init__(self) -> None:
        self.files: Dict[str, ServedFile] = {}
        self.log: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, url_or_path: str, data: bytes, **kwargs: Any) -> ServedFile:
        path = urlsplit(url_or_path).path
        served = ServedFile(data, **kwargs)
        self.files[path] = served
        return served

    def requests_for(self, url_or_path: str) -> List[Dict[str, Any]]:
        path = urlsplit(url_or_path).path
        return [r for r in self.log if r["path"] == path]

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        entry = {
            "path": parts.path,
            "query": parts.query,
            "range": h.headers.get("Range"),
            "if_range": h.headers.get("If-Range"),
            "status": None,
            "bytes": 0,
        }
        with self._lock:
            self.log.append(entry)
            served = self.files.get(parts.path)
            fault = None
            if served is not None:
                fault = served.faults.pop(0) if served.faults else served.sticky_fault
        if served is None:
            return self._simple(h, entry, 404)
        if fault and fault[0] == "status":
            return self._simple(h, entry, fault[1])
        data = served.data
        if fault and fault[0] == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 16]) + data[mid + 16 :]
        start = 0
        rng = h.headers.get("Range")
        use_range = rng is not None and not (fault and fault[0] == "norange")
        if use_range and served.etag and h.headers.get("If-Range") not in (None, served.etag):
            use_range = False  # If-Range mismatch: the whole (new) file
        if use_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                entry["status"] = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return None
        if fault and fault[0] == "endless":
            return self._endless(h, entry, data)
        body = data[start:]
        status = 206 if use_range else 200
        entry["status"] = status
        h.send_response(status)
        announced = len(body)
        if fault and fault[0] == "length":
            announced = fault[1]
        h.send_header("Content-Length", str(announced))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Accept-Ranges", "bytes")
        if served.etag:
            h.send_header("ETag", served.etag)
        if served.last_modified:
            h.send_header("Last-Modified", served.last_modified)
        if served.content_md5 and status == 200:
            h.send_header("Content-MD5", base64.b64encode(hashlib.md5(served.data).digest()).decode())
        if served.crc64 is not None:
            h.send_header("x-oss-hash-crc64ecma", str(served.crc64))
        h.end_headers()
        if fault and fault[0] == "cut":
            body = body[: fault[1]]
        pause = fault[1] if fault and fault[0] == "slow" else 0.0
        try:
            for i in range(0, len(body), 65536):
                piece = body[i : i + 65536]
                h.wfile.write(piece)
                entry["bytes"] += len(piece)
                if pause:
                    h.wfile.flush()
                    time.sleep(pause)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if (fault and fault[0] in ("cut", "length")) or announced != len(body):
            h.close_connection = True
        return None

    def _endless(self, h: BaseHTTPRequestHandler, entry: Dict[str, Any], data: bytes) -> None:
        entry["status"] = 200
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        piece = (data * (65536 // max(len(data), 1) + 1))[:65536]
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        try:
            while True:
                h.wfile.write(frame)
                entry["bytes"] += len(piece)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        h.close_connection = True

    def _simple(self, h: BaseHTTPRequestHandler, entry: Dict[str, Any], status: int) -> None:
        entry["status"] = status
        body = f"status {status}\n".encode()
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def oss_crc64(data: bytes) -> int:
    """The value an OSS server sends in x-oss-hash-crc64ecma (CRC-64/XZ as an unsigned decimal)."""
    return crc64_xz(data)
