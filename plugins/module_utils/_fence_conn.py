# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt access shared by the fence's worker threads: SharedConnection, guest-agent calls, VM resolution.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Callable, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError
from ansible_collections.kvmsnap.core.plugins.module_utils._retry import retry

VIR_ERR_NO_SUPPORT = 3
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5
_UNSUPPORTED = (VIR_ERR_NO_SUPPORT, VIR_ERR_ARGUMENT_UNSUPPORTED, VIR_ERR_OPERATION_UNSUPPORTED)


class SharedConnection:
    """Read-write libvirt connections shared by the worker threads (libvirt connections are thread-safe).

    ``slots`` connections: libvirtd serves at most ``max_client_requests`` (default 5) calls of one client at a
    time, so a parallel fence spreads its workers over several connections (a worker binds its thread to a
    slot). Each slot reconnects once per generation when libvirtd restarts (F7 (docs/dev/faults.md#f7)); calls are retried
    ``retries`` times after transient errors.
    """

    def __init__(self, uri: Optional[str], retries: int = 3, readonly: bool = False, delay: float = 0.5,
                 slots: int = 1) -> None:
        self.uri = uri
        self.retries = max(0, int(retries))
        self.readonly = readonly
        self.delay = delay
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._conns: List[Any] = [None] * max(1, slots)
        self._gens: List[int] = [0] * max(1, slots)
        self._doms: Dict[Any, Any] = {}
        self.reconnects = 0

    def set_slots(self, slots: int) -> None:
        with self._lock:
            while len(self._conns) < slots:
                self._conns.append(None)
                self._gens.append(0)

    def bind(self, index: int) -> None:
        """Bind the calling thread to connection slot INDEX (modulo the number of slots)."""
        self._tls.slot = index % len(self._conns)

    def _get(self):
        slot = getattr(self._tls, "slot", 0)
        with self._lock:
            if self._conns[slot] is None:
                self._conns[slot] = _libvirt.open_connection(self.uri, readonly=self.readonly, retries=self.retries,
                                                             delay=self.delay)
            return self._conns[slot], (slot, self._gens[slot])

    @property
    def conn(self) -> Any:
        return self._get()[0]

    def _reconnect(self, gen: Any) -> None:
        slot, number = gen
        with self._lock:
            if number != self._gens[slot]:
                return  # another thread already reconnected this slot
            old = self._conns[slot]
            try:
                if old is not None:
                    old.close()
            except Exception:
                pass  # a dead connection may fail to close
            # domain objects of the dead connection are useless (and its id() may be reused)
            self._doms = {k: v for k, v in self._doms.items() if k[0] != id(old)}
            self._conns[slot] = None
            self._gens[slot] += 1
            self.reconnects += 1

    def domain(self, conn: Any, vm_uuid: str) -> Any:
        key = (id(conn), vm_uuid)
        dom = self._doms.get(key)
        if dom is None:
            dom = conn.lookupByUUIDString(vm_uuid)
            self._doms[key] = dom
        return dom

    def call(self, fn: Callable[[Any, int], Any]) -> Any:
        """fn(conn, attempt); a transient error → reconnect and call again (at most ``retries`` times)."""
        gens: List[Any] = [None]

        def once(attempt: int) -> Any:
            conn, gens[0] = self._get()
            return fn(conn, attempt)
        return retry(once, self.retries, _libvirt.is_transient, base=self.delay,
                     before_retry=lambda _err, _attempt: self._reconnect(gens[0]))

    def close(self) -> None:
        with self._lock:
            for idx, conn in enumerate(self._conns):
                try:
                    if conn is not None:
                        conn.close()
                except Exception:
                    pass
                self._conns[idx] = None
            self._doms = {}


def set_agent_timeout(dom: Any, seconds: int) -> None:
    try:
        dom.agentSetResponseTimeout(int(seconds))
    except Exception as err:
        if _libvirt.error_code(err) not in _UNSUPPORTED:
            raise


def agent_command(dom: Any, command: str, timeout: int) -> Any:
    """Run a guest-agent command (JSON) with a timeout; returns the decoded 'return' value."""
    import libvirt_qemu  # part of libvirt-python: optional, imported where the agent is used
    out = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": command}), int(timeout), 0)
    return json.loads(out).get("return") if out else None


def agent_not_configured(err: BaseException) -> bool:
    """libvirt refused an agent command because the domain has no guest-agent channel at all."""
    return _libvirt.error_code(err) == VIR_ERR_ARGUMENT_UNSUPPORTED and "agent is not configured" in str(err)


def agent_not_connected(err: BaseException) -> bool:
    """libvirt refused an agent command because no agent is connected or configured (nothing reached the guest)."""
    if agent_not_configured(err):
        return True
    return _libvirt.error_code(err) == VIR_ERR_AGENT_UNRESPONSIVE and "not connected" in str(err)


def agent_missing_hint(err: BaseException) -> str:
    """What to do when a freeze failed because the VM has no guest agent ('' for any other failure)."""
    text = str(err)
    if "agent is not configured" not in text and not agent_not_connected(err):
        return ""
    return (". The VM has no working QEMU guest agent, so it cannot be frozen: quiesce it with mode auto (freeze "
            "where the agent answers, suspend the others) or suspend - role variable kvmsnap_quiesce_mode - or give "
            "it a guest-agent channel and run qemu-guest-agent in it.")


def agent_ping(dom: Any, timeout: int) -> Optional[bool]:
    """True: the agent answered; False: it did not; None: this driver cannot run agent commands."""
    try:
        agent_command(dom, "guest-ping", timeout)
        return True
    except ImportError:
        return None
    except Exception as err:
        if _libvirt.error_code(err) in _UNSUPPORTED:
            return None
        return False


def freeze_status(dom: Any, timeout: int) -> Optional[str]:
    """'frozen' / 'thawed' from the agent, or None when it cannot be asked."""
    try:
        return agent_command(dom, "guest-fsfreeze-status", timeout)
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# resolution


def resolve_vms(conn: Any, idents: List[str], uri: Optional[str]) -> List[Dict[str, Any]]:
    """Every VM ({ident, uuid, name, state, paused_reason}); unknown ones all listed in one FenceError."""
    if not idents:
        raise FenceError("vms: no VM given; name at least one VM (name or UUID) to quiesce on %s." % (uri,))
    for idx, ident in enumerate(idents):
        if not isinstance(ident, str) or not ident.strip():
            raise FenceError("vms[%d]: empty VM name; give a libvirt domain name or UUID." % idx)
    pairs, unknown = _libvirt.lookup_domains(conn, idents)
    found: List[Dict[str, Any]] = []
    for ident, dom in pairs:
        state, reason = dom.state()
        sname = _libvirt.state_name(state)
        found.append({"ident": ident, "uuid": dom.UUIDString(), "name": dom.name(), "state": sname,
                      "paused_reason": _libvirt.paused_reason(reason) if sname == "paused" else None})
    if unknown:
        raise FenceError("unknown VM(s) on %s %s: %s; nothing was quiesced. Check the names/UUIDs with "
                         "'virsh -c %s list --all'." % (socket.gethostname(), uri or _libvirt.DEFAULT_URI,
                                                        ", ".join(repr(u) for u in unknown),
                                                        uri or _libvirt.DEFAULT_URI),
                         {"unknown_vms": unknown})
    return found


def resolve_lock_vms(conn: Any, idents: List[str], uri: Optional[str], missing: str = "fail") -> List[Dict[str, Any]]:
    """The VMs to lock; with MISSING=lock a UUID that no VM of the host has (a deleted VM a restore re-creates)
    is locked too, as state V(absent) - the lock is keyed by UUID, so a backup of the re-created VM still meets it."""
    if missing != "lock":
        return resolve_vms(conn, idents, uri)
    known, absent = [], []
    for ident in idents:
        if isinstance(ident, str) and _libvirt.is_uuid(ident):
            try:
                _libvirt.lookup_domain(conn, ident)
            except _libvirt.DomainNotFound:
                absent.append({"ident": ident, "uuid": ident.lower(), "name": ident, "state": "absent",
                               "paused_reason": None})
                continue
        known.append(ident)
    return (resolve_vms(conn, known, uri) if known else []) + absent
