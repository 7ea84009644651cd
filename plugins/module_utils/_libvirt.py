# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt access for the vm_* modules: connections, domain lookup, retries, state names.

This module util is PRIVATE to the collection. It may change without notice, but the names
below are a contract between vm_info, vm_quiesce, vm_backup and vm_restore; extend, don't rename.
It imports without Ansible (the fence watchdog uses it outside AnsiballZ); the modules' ``uri`` option
(``uri_option``) is in ``_libvirt_args``.

Public names
------------
``HAS_LIBVIRT`` / ``LIBVIRT_IMPORT_ERROR``
    Guarded import of libvirt-python. Modules call
    ``module.fail_json(msg=missing_required_lib('libvirt-python'), exception=LIBVIRT_IMPORT_ERROR)``
    when ``HAS_LIBVIRT`` is false.
``DEFAULT_URI = 'qemu:///system'``
``LibvirtAccessError(KvmsnapError)``
    Raised by this module; ``str()`` names the URI and what to do next. ``.uri``, ``.code``
    (libvirt error code or None), ``.transient`` (bool).
``DomainNotFound(LibvirtAccessError)``
    ``lookup_domain`` found nothing; ``.ident``, ``.kind`` ('uuid' or 'name').
``open_connection(uri=None, readonly=True, retries=3, delay=0.5) -> virConnect``
    ``uri`` None/'' → ``$LIBVIRT_DEFAULT_URI`` is honoured by libvirt itself, else qemu:///system.
    ``readonly=True`` uses ``libvirt.openReadOnly`` (discovery must not be able to change anything).
    Transient failures (daemon restarting, socket not there yet: VIR_ERR_SYSTEM_ERROR, VIR_ERR_RPC,
    VIR_ERR_NO_CONNECT, ...) are retried ``retries`` times with a growing delay.
``is_transient(err) -> bool``
    True for a libvirt error that a reconnect can cure (see TRANSIENT_CODES).
``is_uuid(text) -> bool``
    Strict UUID form (8-4-4-4-12 hex digits, or 32 hex digits).
``lookup_domain(conn, ident, kind=None) -> virDomain``
    ``kind`` 'uuid' or 'name' forces the lookup kind. Without it: a string of UUID form is looked
    up strictly by UUID (never falls back to a name), anything else strictly by name. Names are
    opaque strings passed to libvirt's API (``lookupByName``), never to a shell.
``retrying(conn_factory, fn, retries=3, delay=0.5, conn=None)``
    Calls ``fn(conn)``; on a transient libvirt error it gets a fresh connection from
    ``conn_factory()`` (e.g. after a libvirtd restart) and calls ``fn`` again, at most ``retries``
    more times. ``fn`` must look its domains up again from the connection it is given (by UUID):
    virDomain objects of a dead connection are useless. Non-transient errors are raised unchanged.
``LibvirtSession(uri=None, readonly=True, retries=3, delay=0.5)``
    Keeps one connection and reconnects on demand: ``.conn`` (opens lazily), ``.call(fn)``
    (= ``retrying`` with this session's connection), ``.reconnect()``, ``.close()``; usable as a
    context manager.
``STATE_NAMES`` / ``state_name(code) -> str`` / ``domain_state(dom) -> str``
    libvirt domain state → 'nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff',
    'crashed', 'pmsuspended' ('unknown' for anything else).
``PAUSED_REASONS`` / ``paused_reason(code) -> str``
    VIR_DOMAIN_PAUSED_* → 'user', 'save', 'migration', 'snapshot', 'ioerror', ... (for
    "don't resume what the user paused").
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

try:
    import libvirt
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None

DEFAULT_URI = "qemu:///system"


# libvirt error codes (virErrorNumber) that a reconnect can cure. Numbers, not attributes, so this
# module imports without libvirt-python (ansible-test import sanity runs in a bare venv).
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_NO_CONNECT = 5
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_RPC = 39
VIR_ERR_INVALID_CONN = 6
VIR_ERR_OPERATION_TIMEOUT = 68
TRANSIENT_CODES = frozenset([VIR_ERR_NO_CONNECT, VIR_ERR_SYSTEM_ERROR, VIR_ERR_RPC, VIR_ERR_INVALID_CONN,
                             VIR_ERR_OPERATION_TIMEOUT])
# error domains (virErrorDomain) of the RPC layer
VIR_FROM_REMOTE = 13
VIR_FROM_RPC = 7
# messages of a connection that went away under us (libvirtd restarted)
_TRANSIENT_MESSAGES = ("client socket is closed", "connection closed", "end of file while reading data",
                       "cannot recv data", "cannot send data", "failed to connect socket",
                       "no connection driver available", "broken pipe")

STATE_NAMES: dict[int, str] = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}

PAUSED_REASONS: dict[int, str] = {
    0: "unknown", 1: "user", 2: "migration", 3: "save", 4: "dump", 5: "ioerror", 6: "watchdog",
    7: "from_snapshot", 8: "shutting_down", 9: "snapshot", 10: "crashed", 11: "starting_up",
    12: "postcopy", 13: "postcopy_failed", 14: "api_error",
}

_UUID_RE = re.compile(r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                      r"|[0-9a-fA-F]{32})$")


class LibvirtAccessError(KvmsnapError):
    """A libvirt call failed; the message names the URI and what to do next."""

    def __init__(self, message: str, uri: str | None = None, code: int | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.uri = uri
        self.code = code
        self.transient = transient


class DomainNotFound(LibvirtAccessError):
    """No domain with that UUID / name on this connection."""

    def __init__(self, ident: str, kind: str, uri: str | None = None) -> None:
        super().__init__("libvirt {}: no domain with {} {!r}; check the name/UUID with "
                         "'virsh -c {} list --all'.".format(uri or "?", kind, ident, uri or DEFAULT_URI),
                         uri=uri, code=VIR_ERR_NO_DOMAIN)
        self.ident = ident
        self.kind = kind


def error_code(err: BaseException) -> int | None:
    """The libvirt error code of an exception, or None."""
    get = getattr(err, "get_error_code", None)
    if get is None:
        return None
    try:
        return get()
    except (AttributeError, TypeError, IndexError):  # pragma: no cover - broken error object
        return None


def is_transient(err: BaseException) -> bool:
    """A libvirt error that a reconnect (after a libvirtd restart, a dropped socket) can cure."""
    if isinstance(err, LibvirtAccessError):
        return err.transient
    if libvirt is None or not isinstance(err, libvirt.libvirtError):
        return False
    code = error_code(err)
    if code in TRANSIENT_CODES:
        return True
    msg = (str(err) or "").lower()
    if code in (VIR_ERR_INTERNAL_ERROR, VIR_ERR_OPERATION_FAILED) or err.get_error_domain() in (VIR_FROM_REMOTE,
                                                                                                VIR_FROM_RPC):
        return any(m in msg for m in _TRANSIENT_MESSAGES)
    return False


def is_uuid(text: Any) -> bool:
    return isinstance(text, str) and bool(_UUID_RE.match(text))


def _effective_uri(uri: str | None) -> str:
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def _silence_libvirt() -> None:
    # libvirt prints every error to stderr by default; modules report errors themselves.
    if libvirt is not None:
        with contextlib.suppress(libvirt.libvirtError, TypeError):
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def open_connection(uri: str | None = None, readonly: bool = True, retries: int = 3,
                    delay: float = 0.5) -> Any:
    """Open a libvirt connection (read-only by default) with bounded retries on transient errors."""
    if libvirt is None:
        raise LibvirtAccessError("libvirt-python is not installed on this host; install the "
                                 "python3-libvirt package or 'pip install libvirt-python'.")
    _silence_libvirt()
    target = _effective_uri(uri)
    last: BaseException | None = None
    tried = 0

    def once(_attempt: int) -> Any:
        nonlocal tried
        tried += 1
        return libvirt.openReadOnly(target) if readonly else libvirt.open(target)
    try:
        conn = retry(once, retries, lambda err: isinstance(err, libvirt.libvirtError) and is_transient(err),
                     base=delay)
    except libvirt.libvirtError as err:
        last = err
    else:
        if conn is not None:  # old bindings returned None instead of raising
            return conn
    code = error_code(last) if last is not None else None
    transient = bool(last is not None and is_transient(last))
    hint = (" Is libvirtd (or virtqemud) running on this host, and may this user open the socket?"
            if transient or last is None else "")
    raise LibvirtAccessError(
        "cannot connect to libvirt at {}{} after {} attempt(s): {}.{}".format(
            target, " (read-only)" if readonly else "", tried, last if last is not None else "no connection", hint),
        uri=target, code=code, transient=transient)


def lookup_domain(conn: Any, ident: str, kind: str | None = None) -> Any:
    """Find a domain strictly by UUID (UUID-form strings, or kind='uuid') or by name."""
    if kind not in (None, "uuid", "name"):
        raise ValueError(f"kind must be 'uuid', 'name' or None, got {kind!r}")
    if not isinstance(ident, str) or not ident:
        raise DomainNotFound(repr(ident), kind or "name", _conn_uri(conn))
    if kind is None:
        kind = "uuid" if is_uuid(ident) else "name"
    if kind == "uuid" and not is_uuid(ident):
        raise DomainNotFound(ident, "uuid (not of UUID form)", _conn_uri(conn))
    try:
        if kind == "uuid":
            return conn.lookupByUUIDString(ident)
        return conn.lookupByName(ident)
    except Exception as err:
        if libvirt is not None and isinstance(err, libvirt.libvirtError) and error_code(err) == VIR_ERR_NO_DOMAIN:
            raise DomainNotFound(ident, kind, _conn_uri(conn)) from None
        raise


def lookup_domains(conn: Any, idents: Iterable[str]) -> tuple[list[tuple[str, Any]], list[str]]:
    """([(ident, domain)], unknown idents) of IDENTS (names or UUIDs); a VM named twice (name and UUID) comes once,
    with the first ident that named it."""
    found: list[tuple[str, Any]] = []
    unknown: list[str] = []
    seen: set[str] = set()
    for ident in idents:
        try:
            dom = lookup_domain(conn, ident)
        except DomainNotFound:
            unknown.append(ident)
            continue
        if dom.UUIDString() not in seen:
            seen.add(dom.UUIDString())
            found.append((ident, dom))
    return found, unknown


def _conn_uri(conn: Any) -> str | None:
    try:
        return conn.getURI()
    except Exception:
        return None


def _close_quietly(conn: Any) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):  # a dead connection may fail to close; nothing to do then
        conn.close()


def retrying(conn_factory: Callable[[], Any], fn: Callable[[Any], Any], retries: int = 3,
             delay: float = 0.5, conn: Any = None) -> Any:
    """Run fn(conn); on a transient libvirt error reconnect through conn_factory() and run it again.

    ``conn``: the connection for the first attempt (default: ``conn_factory()``). At most
    ``retries`` reconnects; then the last error is raised.
    """
    current = [conn]

    def once(_attempt: int) -> Any:
        if current[0] is None:
            current[0] = conn_factory()
        return fn(current[0])

    def drop(_err: Exception, _attempt: int) -> None:  # a dead connection is useless: the next attempt reconnects
        _close_quietly(current[0])
        current[0] = None
    return retry(once, retries, is_transient, base=delay, before_retry=drop)


class LibvirtSession:
    """One libvirt connection that reconnects on transient errors (libvirtd restart)."""

    def __init__(self, uri: str | None = None, readonly: bool = True, retries: int = 3,
                 delay: float = 0.5) -> None:
        self.uri = _effective_uri(uri)
        self.readonly = readonly
        self.retries = retries
        self.delay = delay
        self._conn: Any = None

    def _open(self) -> Any:
        _close_quietly(self._conn)
        self._conn = None
        self._conn = open_connection(self.uri, readonly=self.readonly, retries=self.retries, delay=self.delay)
        return self._conn

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._open()
        return self._conn

    def reconnect(self) -> Any:
        return self._open()

    def call(self, fn: Callable[[Any], Any]) -> Any:
        return retrying(self._open, fn, retries=self.retries, delay=self.delay, conn=self.conn)

    def close(self) -> None:
        _close_quietly(self._conn)
        self._conn = None

    def __enter__(self) -> LibvirtSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def state_name(code: Any) -> str:
    try:
        return STATE_NAMES.get(int(code), "unknown")
    except (TypeError, ValueError):
        return "unknown"


def paused_reason(code: Any) -> str:
    try:
        return PAUSED_REASONS.get(int(code), "unknown")
    except (TypeError, ValueError):
        return "unknown"


def domain_state(dom: Any) -> str:
    """The domain's state as a string (one libvirt call)."""
    state, _reason = dom.state()
    return state_name(state)
