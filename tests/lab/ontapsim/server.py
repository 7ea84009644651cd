"""HTTPS front end: TLS, basic auth, fault/latency hooks, call log; dispatch to REST, ZAPI
and the /_sim/ admin API. Entry point of tests/lab/ontap-sim."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import config as configmod
from .admin import AdminApi
from .auth import REALM, Auth
from .certs import ensure_certs
from .faults import CallRecord, Knobs
from .jobs import Jobs
from .ops import Ops
from .peers import RUNNING
from .rest import Request, RestApi, nest
from .state import State
from .storage import Storage
from .zapi import ZAPI_PATH, ZapiApi

VERBOSE = False


def log(msg: str) -> None:
    if VERBOSE:
        sys.stderr.write(f"ontap-sim {time.strftime('%H:%M:%S')} {msg}\n")
        sys.stderr.flush()


class Sim:
    """Everything a request handler needs."""

    def __init__(self, data_dir: Path, cfg: dict[str, Any], latency_scale: float | None) -> None:
        self.cfg = cfg
        self.storage = Storage(data_dir)
        self.state = State(data_dir, cfg, self.storage)
        self.knobs = Knobs(cfg["latency"], cfg["latency_scale"] if latency_scale is None else latency_scale)
        self.auth = Auth(cfg["users"], cfg["roles"], cfg.get("role_privileges"))
        self.ops = Ops(self.state)
        self.jobs = Jobs(self.state)
        self.rest = RestApi(self.state, self.ops, self.jobs, self.knobs, self.auth)
        self.zapi = ZapiApi(self.state, self.ops, self.knobs, self.auth)
        self.admin = AdminApi(self.state, self.ops, self.knobs, self.auth)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "libzapid-httpd"
    sys_version = ""
    sim: Sim

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per call is logged by _handle instead

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    # -- plumbing ------------------------------------------------------------------------------
    lose_reply = False  # set per request by a drop fault with execute=true

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        if self.lose_reply:
            self._drop()
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body, indent=1).encode()
        self._send(status, data, "application/hal+json", headers)

    def _drop(self) -> None:
        # Close without answering, as a crashed or cut-off controller would.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def _handle(self) -> None:
        sim = self.sim
        self.lose_reply = False
        parsed = urllib.parse.urlsplit(self.path)
        # ONTAP answers "/api//application/…" as "/api/application/…": repeated slashes are one.
        path = re.sub(r"//+", "/", urllib.parse.unquote(parsed.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        is_zapi = path == ZAPI_PATH
        rec = CallRecord(seq=0, method=self.command, path=path, query=parsed.query, user=None,
                         svm_header=self.headers.get("X-Dot-SVM-Name"))
        api = None
        if is_zapi:
            api, rec.vfiler = sim.zapi.peek(raw)
            rec.api = api
            rec.body = raw[:8192].decode("utf-8", "replace")
        elif raw.strip():
            try:
                rec.body = json.loads(raw)
            except ValueError:
                rec.body = raw[:8192].decode("utf-8", "replace")
        header = self.headers.get("Authorization")
        if header:
            user = sim.auth.authenticate(header)
        else:
            # No credentials in the request: a client certificate (already verified against the
            # lab CA during the handshake) may name the user.
            user = sim.auth.from_certificate(self.connection.getpeercert())
        rec.user = user["name"] if user else None
        if not path.startswith("/_sim/"):  # the log is what clients did, not the test's own knobs
            sim.knobs.log_call(rec)
        try:
            self._route(rec, path, parsed.query, raw, user, is_zapi, api)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a simulator bug must still answer, like ONTAP's 500
            rec.status, rec.code = 500, "65562"
            log(f"internal error on {self.command} {path}: {exc!r}")
            self._send_json(500, {"error": {"message": f"Internal error: {exc}", "code": "65562"}})
        finally:
            rec.end = time.time()
            log(f"{rec.method} {rec.path}{' ' + api if api else ''} user={rec.user} -> {rec.status}")

    def _route(self, rec: CallRecord, path: str, rawq: str, raw: bytes, user: dict[str, Any] | None,
               is_zapi: bool, api: str | None) -> None:
        sim = self.sim
        if not (is_zapi or path.startswith("/api/") or path == "/api" or path.startswith("/_sim/")):
            rec.status = 404
            self._send(404, b"Not Found", "text/plain")
            return
        if user is None:
            rec.status = 401
            hdr = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
            if is_zapi:
                self._send(401, b"<html><body>401 Unauthorized</body></html>", "text/html", hdr)
            else:
                self._send_json(401, {"error": {"message": "Authentication failed: a valid user name and "
                                                           "password are required.", "code": "6"}}, hdr)
            return
        query = dict(urllib.parse.parse_qsl(rawq, keep_blank_values=True))
        if path.startswith("/_sim/"):
            if user.get("role") != "admin":
                rec.status = 403
                self._send_json(403, {"error": {"message": "admin role required", "code": "6"}})
                return
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                rec.status = 400
                self._send_json(400, {"error": {"message": "invalid JSON", "code": "262199"}})
                return
            rec.status, out = sim.admin.handle(self.command, path, query, body)
            self._send_json(rec.status, out)
            return
        fault = sim.knobs.take(self.command, path, api, ("hang", "drop", "error"))
        if fault is not None and fault.action == "hang":
            rec.fault = "hang"
            time.sleep(fault.seconds or 0)
            fault = sim.knobs.take(self.command, path, api, ("drop", "error"))
        if fault is not None and fault.action == "drop":
            rec.fault = "drop"
            if not fault.execute:
                rec.status = None
                self._drop()
                return
            # The controller did the work but the answer never arrives (the client cannot tell).
            self.lose_reply = True
            fault = None
        if is_zapi:
            if fault is not None:
                rec.fault = "error"
                out, rec.zapi_status, rec.errno = sim.zapi.failure(fault.errno, fault.reason or fault.message)
            else:
                out, rec.zapi_status, rec.errno = sim.zapi.handle(raw, user)
            rec.status = 200
            self._send(200, out, "text/xml; charset=utf-8")
            return
        if fault is not None:
            rec.fault, rec.status, rec.code = "error", fault.status, fault.code
            self._send_json(fault.status, {"error": {"message": fault.message, "code": fault.code}})
            return
        self._rest(rec, path, rawq, query, raw, user)

    def _rest(self, rec: CallRecord, path: str, rawq: str, query: dict[str, str], raw: bytes,
              user: dict[str, Any]) -> None:
        body: Any = {}
        if raw.strip():
            if self.command in ("GET", "HEAD", "DELETE") and not (self.command == "DELETE" and _empty_object(raw)):
                # ONTAP takes an empty JSON object on DELETE (netapp-ontap always sends one).
                rec.status, rec.code = 400, "262198"
                self._send_json(400, {"error": {"message": "A request body is not allowed on GET, HEAD or DELETE.",
                                                "code": "262198"}})
                return
            try:
                body = json.loads(raw)
            except ValueError as exc:
                rec.status, rec.code = 400, "262199"
                self._send_json(400, {"error": {"message": f"Invalid JSON input: {exc}", "code": "262199"}})
                return
            if not isinstance(body, dict):
                rec.status, rec.code = 400, "262199"
                self._send_json(400, {"error": {"message": "The JSON body must be an object.", "code": "262199"}})
                return
        req = Request(method=self.command, path=path, query=query, body=nest(body), user=user,
                      svm_name=self.headers.get("X-Dot-SVM-Name"), svm_uuid=self.headers.get("X-Dot-SVM-UUID"),
                      raw_query=rawq)
        resp = self.sim.rest.handle(req)
        rec.status = resp.status
        if resp.body and isinstance(resp.body.get("error"), dict):
            rec.code = resp.body["error"].get("code")
        self._send_json(resp.status, resp.body, resp.headers)


def _empty_object(raw: bytes) -> bool:
    try:
        return json.loads(raw) == {}
    except ValueError:
        return False


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's thread, so a stalled client cannot block accept().
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log(f"TLS handshake with {client_address} failed: {exc}")
            return
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if VERBOSE:
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(prog="ontap-sim", description="Loopback ONTAP simulator (REST + ZAPI).")
    ap.add_argument("--data", required=True, type=Path, help="state, volumes and certificates live here")
    ap.add_argument("--config", type=Path, help="cluster YAML (default: the lab cluster)")
    ap.add_argument("--port", type=int, default=0, help="0 = a free port")
    ap.add_argument("--latency-scale", type=float, help="multiply every latency (0 turns them off)")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    try:
        cfg = configmod.load(args.config)
    except (configmod.ConfigError, OSError, KeyError, TypeError) as exc:
        sys.stderr.write(f"ontap-sim: bad config {args.config}: {exc}\n")
        return 2
    ca, cert, key = ensure_certs(data)
    sim = Sim(data, cfg, args.latency_scale)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    # Ask for (but do not require) a client certificate signed by the lab CA: certificate auth.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(str(ca))
    Handler.sim = sim
    server = TLSServer(("127.0.0.1", args.port), Handler, ctx)
    port = server.server_address[1]

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    running = data / RUNNING  # what a peer cluster checks before it reads this cluster's state
    running.write_text(json.dumps({"pid": os.getpid(), "url": f"https://127.0.0.1:{port}"}))
    print(json.dumps({"url": f"https://127.0.0.1:{port}", "ca_file": str(ca), "pid": os.getpid()}), flush=True)
    log(f"serving {cfg['cluster']['name']} ONTAP {'.'.join(map(str, cfg['version']))} on port {port}, "
        f"storage {sim.storage.kind}")
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        sim.state.save()
        running.unlink(missing_ok=True)
    return 0
