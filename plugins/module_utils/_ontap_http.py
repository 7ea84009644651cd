# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTPS session for the ONTAP REST API on ansible.module_utils.urls (no third-party library).

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any, Dict, Optional, Tuple
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.urls import Request

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError, redact
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

USER_AGENT = "kvmsnap.core"


def url_host(hostname: str) -> str:
    return "[%s]" % hostname if ":" in hostname and not hostname.startswith("[") else hostname


def transport_error(exc: BaseException, hostname: str, port: int) -> OntapError:
    """Map socket/TLS/URL errors to an OntapError with a hint; marks the retryable ones transient."""
    reason = getattr(exc, "reason", exc)
    where = "%s:%s" % (hostname, port)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return OntapError("TLS certificate verification failed for %s: %s" % (where, getattr(reason, "verify_message", reason)),
                          hint="Set ca_path to the CA bundle that signed the cluster certificate (or, in a lab only, "
                               "validate_certs: false).")
    if isinstance(reason, ssl.SSLError):
        return OntapError("TLS error talking to %s: %s" % (where, reason),
                          hint="Check port, cert_file/key_file and that the controller speaks HTTPS on that port.")
    if isinstance(reason, ConnectionRefusedError):
        return OntapError("connection to %s refused" % where, transient=True,
                          hint="Check hostname and port, and that the management LIF is up.")
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                           http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return OntapError("connection to %s reset: %s" % (where, reason), transient=True,
                          hint="The controller closed the connection; retry later.")
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return OntapError("no answer from %s within the timeout" % where, transient=True,
                          hint="Raise the timeout option or check the network path to the controller.")
    if isinstance(reason, socket.gaierror):
        return OntapError("cannot resolve host name %s: %s" % (hostname, reason),
                          hint="Check the hostname option.")
    return OntapError("cannot reach %s: %s" % (where, reason), transient=isinstance(reason, OSError),
                      hint="Check hostname, port and the network path to the controller.")


class RestSession:
    """One HTTPS session to a cluster's REST API; TLS settings per session (never global)."""

    def __init__(self, hostname: str, port: Optional[int] = None, username: Optional[str] = None,
                 password: Optional[str] = None, cert_file: Optional[str] = None, key_file: Optional[str] = None,
                 validate_certs: bool = True, ca_path: Optional[str] = None, timeout: int = 60,
                 module_name: str = "", retries: int = 3):
        self.hostname = hostname
        self.port = port or 443
        self.base = "https://%s:%d" % (url_host(hostname), self.port)
        self.timeout = timeout
        self.retries = retries
        self._secrets = [password] if password else []
        self.username = None if cert_file else username
        headers = {"Accept": "application/json", "X-Dot-Client-App": "%s/%s" % (USER_AGENT, module_name or "module")}
        use_cert = bool(cert_file)
        self._request = Request(
            headers=headers, use_proxy=True, timeout=timeout, validate_certs=validate_certs,
            url_username=None if use_cert else username, url_password=None if use_cert else password,
            http_agent=USER_AGENT, force_basic_auth=not use_cert, follow_redirects="none",
            client_cert=cert_file, client_key=key_file, ca_path=ca_path, use_netrc=False)
        self.calls = 0

    # ------------------------------------------------------------------------------------------
    def url(self, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        if not path.startswith("/api/"):
            path = "/api" + path
        url = self.base + quote(path, safe="/*{}:-._~%")  # % : callers may pre-encode a segment (files/{path})
        if query:
            clean = {k: ("true" if v is True else "false" if v is False else v) for k, v in query.items() if v is not None}
            url += "?" + urlencode(clean, safe=",*.|!")
        return url

    def _once(self, method: str, path: str, query: Optional[Dict[str, Any]], body: Any,
              read_timeout: Optional[float] = None) -> Tuple[int, Any, Dict]:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        url = self.url(path, query)
        self.calls += 1
        try:
            resp = self._request.open(method, url, data=data, headers=headers, timeout=read_timeout or self.timeout)
            status = resp.getcode()
            raw = resp.read()
            resp_headers = dict(resp.headers.items()) if getattr(resp, "headers", None) else {}
        except HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read()
            except Exception:  # pylint: disable=broad-except
                raw = b""
            resp_headers = dict(exc.headers.items()) if exc.headers else {}
            payload = _json(raw)
            err = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(err, dict):
                message = err.get("message") or exc.reason
                code = err.get("code")
                target = err.get("target")
            else:
                message, code, target = (str(exc.reason) or "HTTP error %s" % status), None, None
            transient = status >= 500 and (str(code) in ("65541", "65552", "65562") or status in (502, 503, 504))
            raise OntapError(redact(str(message), self._secrets), status=status, code=code, target=target,
                             hostname=self.hostname, transient=transient, api=self._api(method, path),
                             username=self.username or "") from None
        except (URLError, OSError, http.client.HTTPException, ssl.SSLError) as exc:
            err = transport_error(exc, self.hostname, self.port)
            err.message = redact(err.message, self._secrets)
            raise err from None
        payload = _json(raw)
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict) and status >= 400:
            err = payload["error"]
            raise OntapError(err.get("message", "error"), status=status, code=err.get("code"),
                             target=err.get("target"), hostname=self.hostname, api=self._api(method, path),
                             username=self.username or "")
        return status, payload, resp_headers

    @staticmethod
    def _api(method: str, path: str) -> str:
        path = path if path.startswith("/") else "/" + path
        return "%s %s" % (method, path if path.startswith("/api/") else "/api" + path)

    def request(self, method: str, path: str, query: Optional[Dict[str, Any]] = None, body: Any = None,
                safe_to_retry: Optional[bool] = None, read_timeout: Optional[float] = None) -> Tuple[int, Any, Dict]:
        """Send one call. Transient failures are retried `retries` times with a short backoff when the
        call is safe to repeat (GET always; others only if SAFE_TO_RETRY, or when ONTAP said it did not
        run it: connection refused, 'temporarily locked'). READ_TIMEOUT replaces the session's timeout for a
        call whose answer ONTAP holds on purpose (return_timeout)."""
        if safe_to_retry is None:
            safe_to_retry = method in ("GET", "HEAD", "OPTIONS")

        def worth_retrying(exc: Exception) -> bool:
            if not isinstance(exc, OntapError) or not exc.is_transient:
                return False
            not_executed = "temporarily locked" in exc.message.lower() or "refused" in exc.message
            return bool(safe_to_retry or not_executed)
        return retry(lambda _attempt: self._once(method, path, query, body, read_timeout), self.retries,
                     worth_retrying)

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query)[1]

    def get_records(self, path: str, **query: Any) -> list:
        """GET a collection, following `_links.next` when the server pages."""
        records: list = []
        payload = self.get(path, **query)
        for _page in range(1000):
            if not isinstance(payload, dict):
                break
            if "records" not in payload:
                records.append(payload)
                break
            records.extend(payload.get("records") or [])
            nxt = ((payload.get("_links") or {}).get("next") or {}).get("href")
            if not nxt:
                break
            payload = self._get_href(nxt)
        return records

    def _get_href(self, href: str) -> Any:
        path, _sep, qs = href.partition("?")
        from urllib.parse import parse_qsl
        return self.get(path, **dict(parse_qsl(qs)))


def _json(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {"_raw": raw[:500].decode("utf-8", "replace")}
