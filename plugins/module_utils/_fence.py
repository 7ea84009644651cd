# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence: quiesce a set of VMs in parallel, journal it, release exactly what was quiesced.

This module util is PRIVATE to the collection. It may change without notice.

Used by vm_quiesce (state quiesced/released) and vm_backup (quiesce → snapshot → release).

Rules (see docs and tests):

* every VM is resolved (name or UUID) before any VM is touched; unknown VMs fail the run, all named;
* a stale journal of a dead run (or one past its deadline) is recovered first and reported;
* a lock per VM keeps two runs apart (F18 (docs/dev/faults.md#f18)); a stale lock is reported and taken over;
* the journal is written ahead of the quiesce (what will be done), then updated with what was done;
* a detached watchdog (``_watchdog``) releases at the deadline by itself;
* a VM that was paused (or frozen) before the run is never touched (F8 (docs/dev/faults.md#f8)); release of a VM that is
  already running / thawed is a success (F9 (docs/dev/faults.md#f9)); on a failure partway the VMs already quiesced are
  released and the others are left alone (F10 (docs/dev/faults.md#f10));
* consistency levels are never claimed above what was reached.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock, _watchdog
from ansible_collections.kvmsnap.core.plugins.module_utils._result_error import ResultError

MODES = ("suspend", "freeze", "auto", "none")
# strongest first; "offline" = the VM was shut off (its disks are idle and clean)
CONSISTENCY_LEVELS = ("offline", "application", "filesystem", "suspended", "crash")
# connections of one run to libvirtd (libvirtd serves max_client_requests=5 calls per client at a time)
MAX_SLOTS = 8
# Fault-injection points for the integration tests (empty in production): callables run with
# (fence, vms) right before the parallel quiesce / before the release.
BEFORE_QUIESCE: List[Callable[..., None]] = []
BEFORE_RELEASE: List[Callable[..., None]] = []

VIR_ERR_NO_SUPPORT = 3
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_ARGUMENT_UNSUPPORTED = 74
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5
_UNSUPPORTED = (VIR_ERR_NO_SUPPORT, VIR_ERR_ARGUMENT_UNSUPPORTED, VIR_ERR_OPERATION_UNSUPPORTED)


class FenceError(ResultError):
    """The fence failed; ``result`` carries what was done (per-VM outcomes, releases)."""


def _lv():
    from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
    return _libvirt


def _code(err: BaseException) -> Optional[int]:
    return _lv().error_code(err)


def _wall(mono: float) -> float:
    """Epoch seconds of a time.monotonic() reading of this process (journals are read by other processes)."""
    return time.time() - (time.monotonic() - mono)


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000.0, 3)


# ---------------------------------------------------------------------------------------------
# pure rules


def consistency_for(action: str, prior_state: str, frozen_count: Optional[int] = None) -> str:
    """The consistency level a VM's disks have while the run holds it (never more than reached)."""
    if prior_state == "shutoff":
        return "offline"
    if action == "frozen":
        # The agent does not tell whether fsfreeze hooks quiesced applications: claim filesystem only.
        return "filesystem" if (frozen_count is None or frozen_count > 0) else "crash"
    if action == "suspended":
        return "suspended"
    return "crash"


def weakest(levels: List[str]) -> Optional[str]:
    """The weakest of several consistency levels (e.g. of all VMs on one snapshot)."""
    known = [lvl for lvl in levels if lvl in CONSISTENCY_LEVELS]
    if not known:
        return None
    return max(known, key=CONSISTENCY_LEVELS.index)


def planned_action(mode: str, state: str) -> str:
    """What the run will do to a VM in libvirt state STATE (write-ahead journal entry)."""
    if state != "running" or mode == "none":
        return "none"
    return {"suspend": "suspended", "freeze": "frozen", "auto": "auto"}[mode]


def skip_reason(mode: str, state: str, paused_reason: Optional[str] = None) -> Optional[str]:
    if mode == "none":
        return "mode none: crash-consistent, not paused"
    if state == "paused":
        return "paused before this run (reason: %s); left untouched and not resumed" % (paused_reason or "unknown")
    if state == "shutoff":
        return "shut off; nothing to quiesce"
    if state != "running":
        return "in state %s; not quiesced" % state
    return None


def is_test_uri(uri: Optional[str]) -> bool:
    return bool(uri) and str(uri).startswith("test:")


# ---------------------------------------------------------------------------------------------
# libvirt access shared by worker threads


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
                self._conns[slot] = _lv().open_connection(self.uri, readonly=self.readonly, retries=self.retries,
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
        attempt = 0
        while True:
            conn, gen = self._get()
            try:
                return fn(conn, attempt)
            except Exception as err:
                if not _lv().is_transient(err) or attempt >= self.retries:
                    raise
                self._reconnect(gen)
                attempt += 1
                time.sleep(self.delay * attempt)

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


def _agent_timeout(dom: Any, seconds: int) -> None:
    try:
        dom.agentSetResponseTimeout(int(seconds))
    except Exception as err:
        if _code(err) not in _UNSUPPORTED:
            raise


def agent_command(dom: Any, command: str, timeout: int) -> Any:
    """Run a guest-agent command (JSON) with a timeout; returns the decoded 'return' value."""
    import libvirt_qemu  # type: ignore[import-not-found]  # part of libvirt-python
    out = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": command}), int(timeout), 0)
    return json.loads(out).get("return") if out else None


def _agent_not_configured(err: BaseException) -> bool:
    """libvirt refused an agent command because the domain has no guest-agent channel at all."""
    return _code(err) == VIR_ERR_ARGUMENT_UNSUPPORTED and "agent is not configured" in str(err)


def _agent_not_connected(err: BaseException) -> bool:
    """libvirt refused an agent command because no agent is connected or configured (nothing reached the guest)."""
    if _agent_not_configured(err):
        return True
    return _code(err) == VIR_ERR_AGENT_UNRESPONSIVE and "not connected" in str(err)


def agent_missing_hint(err: BaseException) -> str:
    """What to do when a freeze failed because the VM has no guest agent ('' for any other failure)."""
    text = str(err)
    if "agent is not configured" not in text and not _agent_not_connected(err):
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
        if _code(err) in _UNSUPPORTED:
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
    lv = _lv()
    if not idents:
        raise FenceError("vms: no VM given; name at least one VM (name or UUID) to quiesce on %s." % (uri,))
    found: List[Dict[str, Any]] = []
    unknown: List[str] = []
    seen: Dict[str, str] = {}
    for idx, ident in enumerate(idents):
        if not isinstance(ident, str) or not ident.strip():
            raise FenceError("vms[%d]: empty VM name; give a libvirt domain name or UUID." % idx)
        try:
            dom = lv.lookup_domain(conn, ident)
        except lv.DomainNotFound:
            unknown.append(ident)
            continue
        vm_uuid = dom.UUIDString()
        if vm_uuid in seen:
            continue  # the same VM named twice (name and UUID): once is enough
        seen[vm_uuid] = ident
        state, reason = dom.state()
        sname = lv.state_name(state)
        found.append({"ident": ident, "uuid": vm_uuid, "name": dom.name(), "state": sname,
                      "paused_reason": lv.paused_reason(reason) if sname == "paused" else None})
    if unknown:
        import socket
        raise FenceError("unknown VM(s) on %s %s: %s; nothing was quiesced. Check the names/UUIDs with "
                         "'virsh -c %s list --all'." % (socket.gethostname(), uri or lv.DEFAULT_URI,
                                                        ", ".join(repr(u) for u in unknown),
                                                        uri or lv.DEFAULT_URI),
                         {"unknown_vms": unknown})
    return found


def resolve_lock_vms(conn: Any, idents: List[str], uri: Optional[str], missing: str = "fail") -> List[Dict[str, Any]]:
    """The VMs to lock; with MISSING=lock a UUID that no VM of the host has (a deleted VM a restore re-creates)
    is locked too, as state V(absent) - the lock is keyed by UUID, so a backup of the re-created VM still meets it."""
    if missing != "lock":
        return resolve_vms(conn, idents, uri)
    lv = _lv()
    known, absent = [], []
    for ident in idents:
        if isinstance(ident, str) and lv.is_uuid(ident):
            try:
                lv.lookup_domain(conn, ident)
            except lv.DomainNotFound:
                absent.append({"ident": ident, "uuid": ident.lower(), "name": ident, "state": "absent",
                               "paused_reason": None})
                continue
        known.append(ident)
    return (resolve_vms(conn, known, uri) if known else []) + absent


# ---------------------------------------------------------------------------------------------
# quiesce / release of one VM


def quiesce_one(sc: SharedConnection, vm: Dict[str, Any], mode: str, agent_timeout: int) -> Dict[str, Any]:
    """Quiesce one running VM. Returns {action, consistency, error, detail, t_done}; never raises."""
    out: Dict[str, Any] = {"action": "none", "consistency": "crash", "error": None, "detail": None,
                           "frozen_filesystems": None}

    def suspend(conn: Any, attempt: int) -> None:
        dom = sc.domain(conn, vm["uuid"])
        if attempt and dom.state()[0] == VIR_DOMAIN_PAUSED:
            return  # the first attempt went through before the connection dropped
        dom.suspend()

    def freeze(conn: Any, attempt: int) -> int:
        dom = sc.domain(conn, vm["uuid"])
        _agent_timeout(dom, agent_timeout)
        return dom.fsFreeze()

    def prepare_freeze(conn: Any, _attempt: int) -> Optional[str]:
        dom = sc.domain(conn, vm["uuid"])
        return freeze_status(dom, agent_timeout)

    try:
        if mode in ("freeze", "auto"):
            if sc.call(prepare_freeze) == "frozen":
                out["detail"] = "guest filesystems were frozen before this run; left untouched"
                out["t_done"] = time.monotonic()
                out["user_frozen"] = True
                return out
            use_freeze = True
            if mode == "auto":
                ping = sc.call(lambda conn, _a: agent_ping(sc.domain(conn, vm["uuid"]), agent_timeout))
                use_freeze = ping is not False
                if not use_freeze:
                    out["detail"] = "guest agent did not answer guest-ping within %ds; suspended instead" % agent_timeout
            if use_freeze:
                try:
                    count = sc.call(freeze)
                    out["action"] = "frozen"
                    out["frozen_filesystems"] = count
                    out["consistency"] = consistency_for("frozen", "running", count)
                    if count == 0:
                        out["detail"] = "the guest agent froze no filesystem; crash-consistent"
                    out["t_done"] = time.monotonic()
                    return out
                except Exception as err:
                    if mode == "freeze":
                        # the freeze may still land (agent slow): release must thaw; unless it never reached
                        # the guest (no agent configured or connected: libvirt sends nothing), see
                        # docs/dev/faults.md#freeze-no-agent
                        out["action"] = "none" if _agent_not_connected(err) else "frozen"
                        raise
                    out["detail"] = "guest-agent freeze failed (%s); suspended instead" % err
                    try:  # undo a freeze that may have happened partly before suspending
                        sc.call(lambda conn, _a: sc.domain(conn, vm["uuid"]).fsThaw())
                    except Exception:
                        pass
        if mode in ("suspend", "auto"):
            out["action"] = "suspended"
            sc.call(suspend)
            out["consistency"] = consistency_for("suspended", "running")
            out["t_done"] = time.monotonic()
            return out
        out["t_done"] = time.monotonic()
        return out
    except Exception as err:
        op = "freeze" if mode == "freeze" else "suspend"
        hint = agent_missing_hint(err) if op == "freeze" else ""
        out["error"] = "%s of VM %s (%s) failed: %s%s" % (op, vm["name"], vm["uuid"], err, hint)
        out["consistency"] = "crash"
        out["t_done"] = time.monotonic()
        return out


def release_one(sc: SharedConnection, vm: Dict[str, Any], agent_timeout: int) -> Dict[str, Any]:
    """Undo what the run did to one VM (action suspended/frozen/auto). Idempotent; never raises."""
    action = vm.get("action")
    out: Dict[str, Any] = {"result": None, "error": None}

    def not_paused(state: int) -> str:
        return "already running" if state == VIR_DOMAIN_RUNNING else "not paused (%s)" % _lv().state_name(state)

    def resume(conn: Any, _attempt: int) -> str:
        dom = sc.domain(conn, vm["uuid"])
        state = dom.state()[0]
        if state != VIR_DOMAIN_PAUSED:
            return not_paused(state)
        try:
            dom.resume()
        except Exception as err:
            state = dom.state()[0]
            if state != VIR_DOMAIN_PAUSED:  # F9 (docs/dev/faults.md#f9): someone resumed it meanwhile
                return not_paused(state)
            raise err
        return "resumed"

    def thaw(conn: Any, _attempt: int) -> str:
        dom = sc.domain(conn, vm["uuid"])
        _agent_timeout(dom, agent_timeout)
        thawed = dom.fsThaw()
        return "thawed" if thawed else "already thawed"

    lv = _lv()
    try:
        if action in ("frozen", "auto"):
            last: Optional[BaseException] = None
            for _try in range(3):  # F4 (docs/dev/faults.md#f4): retry the thaw, then check the status
                try:
                    out["result"] = sc.call(thaw)
                    last = None
                    break
                except Exception as err:
                    if _code(err) == lv.VIR_ERR_NO_DOMAIN:
                        raise
                    if _agent_not_configured(err):
                        # no agent channel: nothing can have been frozen (journals of older runs record a freeze
                        # attempt on such a VM as frozen)
                        out["result"] = "nothing to thaw (no guest agent configured)"
                        last = None
                        break
                    last = err
                    status = sc.call(lambda conn, _a: freeze_status(sc.domain(conn, vm["uuid"]), agent_timeout))
                    if status == "thawed":
                        out["result"] = "already thawed"
                        last = None
                        break
                    time.sleep(0.2)
            if last is not None and action == "frozen":
                raise last
        if action in ("suspended", "auto"):
            res = sc.call(resume)
            out["result"] = res if action == "suspended" or res == "resumed" else (out["result"] or res)
    except Exception as err:
        if _code(err) == lv.VIR_ERR_NO_DOMAIN:
            out["result"] = "gone"
        else:
            what = "thaw" if action == "frozen" else "resume"
            out["error"] = ("release (%s) of VM %s (%s) failed: %s; check it with 'virsh domstate %s' and "
                            "'virsh domfsfreeze'/'domfsthaw'." % (what, vm.get("name"), vm["uuid"], err, vm["uuid"]))
    out["t_done"] = time.monotonic()
    return out


class Gang:
    """One thread per item, started and prepared (domain looked up) ahead, fired at once by ``fire()``.

    Creating the threads and looking the domains up happens before the fire, so neither lands inside a
    pause window; the release gang of vm_backup is built while the snapshot runs.
    """

    def __init__(self, items: List[Any], fn: Callable[[Any], Dict[str, Any]], sc: Optional[SharedConnection] = None,
                 prepare: Optional[Callable[[Any], None]] = None) -> None:
        self.items = items
        self.fn = fn
        self.sc = sc
        self.prepare = prepare
        self.results: List[Optional[Dict[str, Any]]] = [None] * len(items)
        self.go = [threading.Event() for _item in items]
        self.ready = threading.Semaphore(0)
        self.threads = []
        for idx, item in enumerate(items):
            thread = threading.Thread(target=self._run, args=(idx, item), name="kvmsnap-fence-%d" % idx, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, idx: int, item: Any) -> None:
        if self.sc is not None:
            self.sc.bind(idx)
        try:
            if self.prepare is not None:
                self.prepare(item)
        except Exception:
            pass  # the real call reports the error
        self.ready.release()
        self.go[idx].wait()
        try:
            self.results[idx] = self.fn(item)
        except BaseException as err:  # the worker must always report
            self.results[idx] = {"error": str(err), "t_done": time.monotonic()}

    def fire(self, ready_timeout: float = 30.0, order: Optional[List[int]] = None) -> None:
        """Let every worker go (in ORDER, a list of item indexes, if given: their calls queue in that order)."""
        end = time.monotonic() + ready_timeout
        for _item in self.items:
            if not self.ready.acquire(timeout=max(0.0, end - time.monotonic())):
                break
        for idx in order if order is not None else range(len(self.items)):
            self.go[idx].set()

    def wait(self, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        end = None if timeout is None else time.monotonic() + timeout
        out = []
        for idx, thread in enumerate(self.threads):
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
            res = self.results[idx]
            if res is None:
                res = {"error": "no answer within %.0fs (libvirt/agent call hangs)" % (timeout or 0), "hung": True,
                       "t_done": time.monotonic()}
            out.append(res)
        return out


def _parallel(items: List[Any], fn: Callable[[Any], Dict[str, Any]], timeout: Optional[float] = None,
              sc: Optional[SharedConnection] = None, prepare: Optional[Callable[[Any], None]] = None
              ) -> List[Dict[str, Any]]:
    """Run fn on every item at once, results in item order."""
    if not items:
        return []
    gang = Gang(items, fn, sc, prepare)
    gang.fire()
    return gang.wait(timeout)


# ---------------------------------------------------------------------------------------------
# the run


class Fence:
    """One host's fence state: state_dir, connection, journal, locks, watchdog."""

    def __init__(self, uri: Optional[str], state_dir: str, retries: int = 3, agent_timeout: int = 10,
                 module: str = "vm_quiesce", check_mode: bool = False, watchdog: Optional[bool] = None) -> None:
        self.uri = uri or _lv().DEFAULT_URI
        self.state_dir = state_dir
        self.retries = retries
        self.agent_timeout = agent_timeout
        self.module = module
        self.check_mode = check_mode
        # the test driver is per process: a watchdog process would see other domains
        self.use_watchdog = (not is_test_uri(self.uri)) if watchdog is None else watchdog
        self.sc = SharedConnection(self.uri, retries=retries, readonly=check_mode)
        self.run_id: Optional[str] = None
        self.journal_id: Optional[str] = None
        self.journal: Optional[Dict[str, Any]] = None
        self.locked: List[str] = []
        self.warnings: List[str] = []

    @property
    def where(self) -> str:
        """Host and URI, for messages: 'kvm1 (qemu:///system)'."""
        import socket
        return "%s (%s)" % (socket.gethostname(), self.uri)

    # -- state dir, recovery --------------------------------------------------------------

    def prepare_state_dir(self) -> None:
        if self.check_mode and not os.path.isdir(self.state_dir):
            return
        if self.check_mode:
            return
        _journal.ensure_state_dir(self.state_dir)

    def recover(self, skip: Optional[str] = None) -> List[Dict[str, Any]]:
        """Release VMs of stale runs (dead or past their deadline); report each run. SKIP: a run id left alone
        (the caller's own run, which its release call handles itself)."""
        if not os.path.isdir(os.path.join(self.state_dir, "runs")):
            return []
        report = []
        for journal in _journal.list_journals(self.state_dir):
            if "error" in journal:
                self.warnings.append("unreadable fence journal %s: %s; remove it after checking its VMs."
                                     % (journal["path"], journal["error"]))
                continue
            if _journal.is_final(journal) or journal.get("uri") not in (None, self.uri):
                continue
            if skip is not None and _journal.run_of(journal) == skip:
                continue
            reason = _journal.staleness(journal)
            if reason is None:
                continue
            entry = {"run_id": _journal.run_of(journal), "module": journal.get("module"), "reason": reason,
                     "started": journal.get("started"), "vms": []}
            pending = _journal.pending_vms(journal)
            if self.check_mode:
                entry["vms"] = [{"uuid": v["uuid"], "name": v.get("name"), "action": v["action"],
                                 "result": "would release"} for v in pending]
                report.append(entry)
                continue
            results = _parallel(pending, lambda v: release_one(self.sc, v, self.agent_timeout))
            for vm, res in zip(pending, results):
                entry["vms"].append({"uuid": vm["uuid"], "name": vm.get("name"), "action": vm["action"],
                                     "result": res.get("result"), "error": res.get("error")})
            errors = {v["uuid"]: r.get("error") for v, r in zip(pending, results) if r.get("error")}

            def finish(j: Dict[str, Any], errors: Dict[str, Any] = errors, reason: str = reason) -> None:
                for vm in j.get("vms", []):
                    if vm.get("action") != "none" and not vm.get("released"):
                        vm["released"] = vm["uuid"] not in errors
                        vm["release_error"] = errors.get(vm["uuid"])
                        if vm["released"]:  # who and when: the run's own report derives its consistency from it
                            vm["released_how"] = "recovery"
                            vm["released_by"] = "recovery by run %s (%s)" % (self.run_id or "-", reason)
                            vm["released_at"] = time.time()
                _journal.mark_final(j, "recovered", "run %s (%s)" % (self.run_id or "recovery", reason))

            try:
                _journal.update(self.state_dir, journal["run_id"], finish)
            except (OSError, _journal.JournalError) as err:
                self.warnings.append("could not update journal of run %s: %s" % (journal["run_id"], err))
            _lock.release(self.state_dir, [v["uuid"] for v in journal.get("vms", [])], _journal.run_of(journal))
            report.append(entry)
            if errors:
                self.warnings.append("recovery of run %s could not release: %s" % (journal["run_id"],
                                                                                   "; ".join(errors.values())))
        _journal.prune_finished(self.state_dir)
        return report

    # -- quiesce ----------------------------------------------------------------------------

    def start_run(self, vms: List[Dict[str, Any]], mode: str, deadline_s: float,
                  release_on_owner_exit: bool, run_id: Optional[str] = None) -> Dict[str, Any]:
        """Lock, write the journal ahead, start the watchdog. Returns {run_id, takeovers, watchdog}."""
        self.run_id = run_id or _journal.new_run_id(self.module.replace("vm_", ""))
        # a given run id may fence several hosts sharing this state_dir: one journal per fence
        self.journal_id = _journal.fence_id(self.run_id, [vm["uuid"] for vm in vms]) if run_id else self.run_id
        now = time.time()
        try:
            taken, takeovers = _lock.acquire(self.state_dir, vms, self.run_id, now + deadline_s, now,
                                             journal=self.journal_id)
        except OSError as err:
            raise state_dir_error(self.state_dir, os.path.join(self.state_dir, "locks"), err) from None
        self.locked = taken
        journal = _journal.new_journal(self.journal_id, self.module, self.uri, mode, deadline_s, vms,
                                       release_on_owner_exit=release_on_owner_exit, now=now,
                                       agent_timeout=self.agent_timeout)
        journal["run"] = self.run_id
        for entry, vm in zip(journal["vms"], vms):
            entry["action"] = planned_action(mode, vm["state"])
        self.journal = journal
        try:
            path = _journal.write(self.state_dir, journal)
        except OSError as err:  # full or read-only state_dir: say where, undo the locks, touch nothing
            _lock.release(self.state_dir, self.locked, self.run_id)
            self.locked = []
            raise state_dir_error(self.state_dir, _journal.journal_path(self.state_dir, self.journal_id), err) from None
        wd = None
        if self.use_watchdog:
            try:
                wd = _watchdog.spawn(self.state_dir, path)
            except OSError as err:
                self._abort_run()
                raise FenceError("cannot start the fence watchdog on this host (%s); nothing was quiesced. "
                                 "Check that %s is writable." % (err, self.state_dir)) from None

            def add_owner(j: Dict[str, Any]) -> None:
                j["owners"].append(wd)
            self.journal = _journal.update(self.state_dir, self.journal_id, add_owner)
        else:
            self.warnings.append("no watchdog for %s: the libvirt test driver lives inside this process only"
                                 % self.uri)
        return {"run_id": self.run_id, "takeovers": takeovers, "watchdog": wd}

    def _abort_run(self) -> None:
        if self.run_id is None:
            return
        try:
            _journal.update(self.state_dir, self.journal_id,
                            lambda j: _journal.mark_final(j, "released", "run %s (aborted)" % self.run_id))
        except (OSError, _journal.JournalError):
            pass
        _lock.release(self.state_dir, self.locked, self.run_id)
        self.locked = []

    def quiesce(self, vms: List[Dict[str, Any]], mode: str, allow_crash: bool = False,
                record: bool = True) -> List[Dict[str, Any]]:
        """Quiesce VMS in parallel; returns one outcome per VM (same order).

        RECORD: write the outcome to the journal now (vm_quiesce). vm_backup records after the release so
        no file write lands in the pause window; its write-ahead journal already names every VM to release.
        """
        todo = [vm for vm in vms if planned_action(mode, vm["state"]) != "none"]
        for hook in BEFORE_QUIESCE:
            hook(self, todo)
        self.sc.set_slots(min(MAX_SLOTS, max(1, len(todo))))
        gang = Gang(todo, lambda vm: quiesce_one(self.sc, vm, mode, self.agent_timeout), self.sc, self._lookup)
        t0 = time.monotonic()
        gang.fire()
        results = gang.wait(timeout=max(30.0, 3.0 * self.agent_timeout + 10.0))
        by_uuid = {vm["uuid"]: res for vm, res in zip(todo, results)}
        outcomes = []
        for vm in vms:
            res = by_uuid.get(vm["uuid"])
            if res is None:
                outcomes.append({"uuid": vm["uuid"], "name": vm["name"], "prior_state": vm["state"], "action": "none",
                                 "consistency": consistency_for("none", vm["state"]),
                                 "detail": skip_reason(mode, vm["state"], vm.get("paused_reason")),
                                 "error": None, "t_quiesced": t0, "quiesce_ms": 0.0})
                continue
            action = res.get("action") or ("frozen" if mode == "freeze" else "auto" if mode == "auto" else "suspended")
            if res.get("hung"):
                action = planned_action(mode, "running")  # it may still land: release must undo it
            outcome = {"uuid": vm["uuid"], "name": vm["name"], "prior_state": vm["state"], "action": action,
                       "consistency": res.get("consistency") or "crash", "detail": res.get("detail"),
                       "error": res.get("error"), "t_quiesced": res["t_done"], "quiesce_ms": _ms(t0, res["t_done"]),
                       "frozen_filesystems": res.get("frozen_filesystems")}
            if outcome["error"] and allow_crash:
                outcome["detail"] = "%s; continuing crash-consistent (allow_crash_consistent)" % outcome["error"]
                outcome["error"] = None
                outcome["consistency"] = "crash"
            outcomes.append(outcome)
        if record:
            self._record(outcomes, "quiesced")
        return outcomes

    def _lookup(self, vm: Dict[str, Any]) -> None:
        self.sc.call(lambda conn, _a: self.sc.domain(conn, vm["uuid"]))

    def _record(self, outcomes: List[Dict[str, Any]], state: str) -> None:
        if self.run_id is None:
            return
        actions = {o["uuid"]: o for o in outcomes}

        def apply(j: Dict[str, Any]) -> None:
            for vm in j["vms"]:
                o = actions.get(vm["uuid"])
                if o is not None:
                    vm["action"] = o["action"]
                    vm["consistency"] = o["consistency"]
                    if o.get("t_quiesced") is not None and o["action"] != "none":
                        # lets a later vm_quiesce state=released report the pause window measured on the host
                        vm["quiesced_at"] = _wall(o["t_quiesced"])
                    if "released" in o:
                        vm["released"] = o["released"]
                        vm["release_error"] = o.get("release_error")
                        for key in ("released_at", "released_how", "released_by", "release_result"):
                            if o.get(key) is not None:
                                vm[key] = o[key]
            if j["state"] not in _journal.FINAL_STATES:
                j["state"] = state
        self.journal = _journal.update(self.state_dir, self.journal_id, apply)

    # -- release ------------------------------------------------------------------------------

    def prepare_release(self, outcomes: List[Dict[str, Any]]) -> Gang:
        """Start (but do not fire) the release workers of OUTCOMES: threads up, domains looked up."""
        todo = [o for o in outcomes if o["action"] != "none" and not o.get("released")]
        self.sc.set_slots(min(MAX_SLOTS, max(1, len(todo))))
        return Gang(todo, lambda o: release_one(self.sc, o, self.agent_timeout), self.sc, self._lookup)

    def release(self, outcomes: List[Dict[str, Any]], by: str = "module", gang: Optional[Gang] = None
                ) -> List[Dict[str, Any]]:
        """Release every VM of OUTCOMES this run quiesced, in parallel; sets released/release_* in place."""
        gang = gang or self.prepare_release(outcomes)
        todo = gang.items
        for hook in BEFORE_RELEASE:
            hook(self, todo)
        # first quiesced, first released: the longest pause is then ~ max(quiesce spread, release spread) +
        # snapshot instead of their sum
        gang.fire(order=sorted(range(len(todo)), key=lambda i: todo[i].get("t_quiesced") or 0.0))
        results = gang.wait(timeout=max(30.0, 3.0 * self.agent_timeout + 10.0))
        for o, res in zip(todo, results):
            o["released"] = not res.get("error")
            o["release_result"] = res.get("result")
            o["release_error"] = res.get("error")
            o["t_released"] = res["t_done"]
            if o["released"]:
                o["released_at"] = _wall(res["t_done"])
                o["released_how"] = "release"
                o["released_by"] = "release of run %s" % (self.run_id or "-")
        for o in outcomes:
            if o["action"] == "none":
                o.setdefault("release_result", "untouched")
                o.setdefault("released", True)
        return outcomes

    def finish(self, outcomes: List[Dict[str, Any]], by: str = "module") -> None:
        """Journal final (released) when every VM is released; then the locks go."""
        if self.run_id is None:
            return
        for o in outcomes:
            if o.get("action") == "none":
                o.setdefault("released", True)
        self._record(outcomes, "releasing")
        if all(o.get("released") for o in outcomes):
            try:
                self.journal = _journal.update(self.state_dir, self.journal_id,
                                               lambda j: _journal.mark_final(j, "released", by))
            except (OSError, _journal.JournalError) as err:
                self.warnings.append("could not finish journal of run %s: %s" % (self.run_id, err))
            _lock.release(self.state_dir, self.locked, self.run_id)
            self.locked = []
        else:
            self.warnings.append("run %s: not every VM could be released; its journal stays open so the "
                                 "watchdog and the next run retry" % self.run_id)

    def emergency_release(self) -> None:
        """Release from the write-ahead journal (interrupted mid-quiesce): every planned VM."""
        if self.journal is None:
            return
        pending = [dict(vm) for vm in _journal.pending_vms(self.journal)]
        self.release(pending)
        self.finish(pending, by="run %s (interrupted)" % self.run_id)

    def close(self) -> None:
        self.sc.close()


def state_dir_error(state_dir: str, path: str, err: OSError) -> FenceError:
    """A journal/lock write failed (disk full, read-only, ...): name the file and the setting; nothing was quiesced."""
    import socket
    what = (socket.gethostname(), path, err.strerror or err, state_dir, state_dir)
    return FenceError("%s: cannot write %s (%s) in state_dir %s; nothing was quiesced. Check that %s is writable and "
                      "not full (kvmsnap_state_dir / state_dir)." % what)


def public_outcome(o: Dict[str, Any]) -> Dict[str, Any]:
    """The per-VM entry a module returns (no monotonic timestamps)."""
    keys = ("name", "uuid", "prior_state", "action", "consistency", "detail", "error", "quiesce_ms",
            "released", "release_result", "release_error", "pause_ms", "frozen_filesystems")
    return {k: o.get(k) for k in keys if k in o}


# ---------------------------------------------------------------------------------------------
# signals (F5 (docs/dev/faults.md#f5)): SIGTERM/SIGINT/SIGHUP become an exception in the main thread, so `finally` releases


class FenceInterrupted(BaseException):
    """A termination signal arrived while VMs were (being) quiesced."""


class release_on_signals:
    SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")

    def __init__(self) -> None:
        self.saved: Dict[int, Any] = {}
        self.fired = False

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.fired:
            return  # a second signal must not interrupt the release the first one started
        self.fired = True
        raise FenceInterrupted("interrupted by signal %d" % signum)

    def __enter__(self) -> release_on_signals:
        import signal
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal
        for sig, old in self.saved.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------
# vm_quiesce


def _check_locks(state_dir: str, vms: List[Dict[str, Any]], run_id: Optional[str] = None) -> None:
    """Check mode: fail as the real run would if a live run holds one of the VMs (read-only)."""
    for vm in vms:
        path = _lock.lock_path(state_dir, vm["uuid"])
        rec = _lock.read_lock(path)
        if not rec or (run_id is not None and rec.get("run_id") == run_id):
            continue
        journal = _lock._journal_of(state_dir, rec)
        if _lock.lock_staleness(rec, journal) is None:
            raise FenceError("VM %s (%s) is locked by %s; another kvmsnap run is fencing it."
                             % (vm["name"], vm["uuid"], _lock.describe(rec)), {"holder": rec})


def _plan(vms: List[Dict[str, Any]], mode: str) -> List[Dict[str, Any]]:
    return [{"name": vm["name"], "uuid": vm["uuid"], "prior_state": vm["state"],
             "action": planned_action(mode, vm["state"]),
             "consistency": None if planned_action(mode, vm["state"]) != "none" else consistency_for("none", vm["state"]),
             "detail": skip_reason(mode, vm["state"], vm.get("paused_reason"))} for vm in vms]


def _run_id_param(params: Dict[str, Any]) -> Optional[str]:
    run_id = params.get("run_id")
    if run_id is not None and not _journal.valid_run_id(run_id):
        raise FenceError("run_id: %r is not a valid run id; allowed: 1-128 characters from [A-Za-z0-9_.:-]." % (run_id,))
    return run_id


def run_locked(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=locked: take the per-VM locks of run RUN_ID before the run writes anything (F18 (docs/dev/faults.md#f18)).

    The locks are held (no process owns them) until the run's release/unlock, or until DEADLINE seconds
    from now (the expiry of an abandoned run). A live lock of another run refuses, naming its holder.
    """
    run_id = _run_id_param(params)
    if not run_id:
        raise FenceError("run_id: state=locked needs the run id the later quiesce and release use.")
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "run_id": run_id}
    try:
        fence.prepare_state_dir()
        vms = resolve_lock_vms(fence.sc.conn, params.get("vms") or [], fence.uri, params.get("missing") or "fail")
        result["recovered"] = fence.recover(skip=run_id)
        result["vms"] = [{"name": vm["name"], "uuid": vm["uuid"], "prior_state": vm["state"]} for vm in vms]
        if check_mode:
            _check_locks(fence.state_dir, vms, run_id)
            result["changed"] = True
            result["msg"] = "check mode: would lock %d VM(s) for run %s" % (len(vms), run_id)
            return result
        now = time.time()
        expires = now + float(params["deadline"])
        try:
            _taken, takeovers = _lock.acquire(fence.state_dir, vms, run_id, expires, now, hold=True)
        except OSError as err:
            raise state_dir_error(fence.state_dir, os.path.join(fence.state_dir, "locks"), err) from None
        except _lock.LockBusy as err:
            raise FenceError("vm_quiesce on %s: %s Nothing was written or quiesced by run %s."
                             % (fence.where, err, run_id), dict(result, holder=err.holder)) from None
        result.update(changed=True, lock_takeovers=takeovers, expires=expires,
                      msg="locked %d VM(s) for run %s until %s (released by the run's release, or expired)" % (
                          len(vms), run_id, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))))
        return result
    finally:
        result["warnings"] = fence.warnings
        fence.close()


def run_quiesced(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=quiesced. Raises FenceError (with .result) on failure."""
    run_id = _run_id_param(params)
    mode = params.get("mode") or "auto"
    deadline = float(params["deadline"])
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "run_id": None}
    try:
        fence.prepare_state_dir()
        vms = resolve_vms(fence.sc.conn, params.get("vms") or [], fence.uri)
        result["recovered"] = fence.recover(skip=run_id)
        if result["recovered"]:  # recovery may have resumed some of them: take their state again
            vms = resolve_vms(fence.sc.conn, [vm["uuid"] for vm in vms], fence.uri)
        if check_mode:
            _check_locks(fence.state_dir, vms, run_id)
            result["vms"] = _plan(vms, mode)
            result["changed"] = any(v["action"] != "none" for v in result["vms"]) or bool(result["recovered"])
            result["msg"] = "check mode: would quiesce %d of %d VM(s) (mode %s, deadline %ds); nothing touched" % (
                sum(1 for v in result["vms"] if v["action"] != "none"), len(vms), mode, deadline)
            return result
        outcomes: List[Dict[str, Any]] = []
        with release_on_signals():
            try:
                run = fence.start_run(vms, mode, deadline, release_on_owner_exit=False, run_id=run_id)
            except _lock.LockBusy as err:
                raise FenceError(str(err), dict(result, holder=err.holder)) from None
            result.update(run_id=run["run_id"], lock_takeovers=run["takeovers"],
                          watchdog_pid=(run["watchdog"] or {}).get("pid"))
            try:
                outcomes = fence.quiesce(vms, mode, bool(params.get("allow_crash_consistent")))
            except BaseException:
                fence.emergency_release()
                raise
        failed = [o for o in outcomes if o.get("error")]
        if failed:
            fence.release(outcomes)  # F10 (docs/dev/faults.md#f10): undo the ones that were quiesced, the others were never touched
            fence.finish(outcomes, by="run %s (quiesce failed)" % fence.run_id)
            result["vms"] = [public_outcome(o) for o in outcomes]
            result["changed"] = True
            raise FenceError("vm_quiesce on %s: %d of %d VM(s) could not be quiesced (%s); the VMs already quiesced "
                             "were released again, nothing stays paused." % (
                                 fence.where, len(failed), len(outcomes), "; ".join(o["error"] for o in failed)), result)
        result["vms"] = [public_outcome(o) for o in outcomes]
        result["changed"] = any(o["action"] != "none" for o in outcomes)
        if not result["changed"]:
            fence.finish(outcomes, by="run %s (nothing to quiesce)" % fence.run_id)
        result["deadline"] = fence.journal["deadline"] if fence.journal else None
        result["deadline_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result["deadline"] or 0))
        result["consistency"] = weakest([o["consistency"] for o in outcomes])
        result["msg"] = "quiesced %d VM(s) (mode %s); run %s; released by state=released or by the watchdog at %s" % (
            sum(1 for o in outcomes if o["action"] != "none"), mode, fence.run_id, result["deadline_utc"])
        return result
    finally:
        result["warnings"] = fence.warnings
        fence.close()


def _who(vm: Dict[str, Any], journal: Dict[str, Any]) -> Dict[str, Any]:
    """How a journal VM was released: {released_by (release/watchdog/recovery), released_by_detail, released_at}."""
    how = vm.get("released_how")
    detail = vm.get("released_by") or journal.get("released_by")
    if how is None:  # journals written before per-VM records: judge by the run's record
        text = str(journal.get("released_by") or "")
        how = "watchdog" if text.startswith("watchdog") else "recovery" if "(" in text and "run " in text \
            and "quiesce failed" not in text and "interrupted" not in text else "release"
    return {"released_by": how, "released_by_detail": detail,
            "released_at": vm.get("released_at") or journal.get("released_at"), "quiesced_at": vm.get("quiesced_at")}


def run_released(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_quiesce state=released: undo what vm_quiesce runs did (journals), never anything else.

    With RUN_ID only that run's journal is looked at (a release never touches another run's quiesce, F18 (docs/dev/faults.md#f18))
    and every VM says who released it (this call, the watchdog, another run's recovery, or nobody: not
    quiesced by that run) and when; then the run's remaining locks on this host go.
    """
    run_id = _run_id_param(params)
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_quiesce", check_mode)
    result: Dict[str, Any] = {"changed": False, "vms": [], "recovered": [], "runs": [], "unlocked": []}
    try:
        fence.prepare_state_dir()
        fence.run_id = run_id
        wanted: Optional[Dict[str, Dict[str, Any]]] = None
        if params.get("vms"):
            wanted = {vm["uuid"]: vm for vm in resolve_vms(fence.sc.conn, params["vms"], fence.uri)}
        result["recovered"] = fence.recover(skip=run_id)
        covered: Dict[str, Dict[str, Any]] = {}
        if run_id is None:  # legacy: no run scope; the recovered runs' VMs count as released here
            for run in result["recovered"]:
                for vm in run["vms"]:
                    covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                           "release_result": vm.get("result"), "release_error": vm.get("error"),
                                           "run_id": run["run_id"], "released": not vm.get("error"),
                                           "released_by": "recovery", "released_at": time.time()}
        journals = []
        if os.path.isdir(os.path.join(fence.state_dir, "runs")):
            for j in _journal.list_journals(fence.state_dir):
                if "error" in j or j.get("uri") != fence.uri:
                    continue
                if run_id is not None:
                    if _journal.run_of(j) == run_id:
                        journals.append(j)
                elif not _journal.is_final(j) and (j.get("module") == "vm_quiesce" or _journal.staleness(j) is not None):
                    journals.append(j)
        for journal in journals:
            mine = [vm for vm in journal.get("vms", []) if vm.get("action") != "none"
                    and (wanted is None or vm["uuid"] in wanted)]
            pending = [dict(vm) for vm in mine if not vm.get("released")]
            for vm in mine:  # released before this call (by an earlier call, the watchdog or a recovery)
                if vm.get("released"):
                    covered[vm["uuid"]] = dict({"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                                "release_result": vm.get("release_result"), "release_error": None,
                                                "run_id": _journal.run_of(journal), "released": True},
                                               **_who(vm, journal))
            if not pending:
                continue
            result["runs"].append(_journal.run_of(journal))
            if check_mode:
                for vm in pending:
                    covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                           "release_result": "would release", "run_id": _journal.run_of(journal)}
                continue
            fence.release(pending)
            for vm in pending:
                if vm.get("released") and vm.get("quiesced_at") and vm.get("t_released") is not None:
                    vm["pause_ms"] = round(max(_wall(vm["t_released"]) - vm["quiesced_at"], 0.0) * 1000.0, 1)
            errors = {vm["uuid"]: vm.get("release_error") for vm in pending if vm.get("release_error")}
            done = {vm["uuid"]: vm for vm in pending if vm.get("released")}

            def apply(j: Dict[str, Any], done: Dict[str, Any] = done, errors: Dict[str, Any] = errors) -> None:
                for vm in j["vms"]:
                    if vm["uuid"] in done:
                        vm["released"] = True
                        for key in ("release_result", "released_at", "released_how", "released_by"):
                            vm[key] = done[vm["uuid"]].get(key)
                    elif vm["uuid"] in errors:
                        vm["release_error"] = errors[vm["uuid"]]
                if not _journal.pending_vms(j) and not _journal.is_final(j):
                    _journal.mark_final(j, "released", "vm_quiesce state=released")
            updated = _journal.update(fence.state_dir, journal["run_id"], apply)
            _lock.release(fence.state_dir, list(done), _journal.run_of(journal))
            if _journal.is_final(updated):
                _lock.release(fence.state_dir, [v["uuid"] for v in updated["vms"]], _journal.run_of(journal))
            for vm in pending:
                covered[vm["uuid"]] = {"name": vm.get("name"), "uuid": vm["uuid"], "action": vm["action"],
                                       "release_result": vm.get("release_result"),
                                       "release_error": vm.get("release_error"), "run_id": _journal.run_of(journal),
                                       "released": bool(vm.get("released")), "pause_ms": vm.get("pause_ms"),
                                       "released_by": "release" if vm.get("released") else None,
                                       "released_by_detail": vm.get("released_by"),
                                       "released_at": vm.get("released_at"), "quiesced_at": vm.get("quiesced_at")}
        out = list(covered.values())
        if wanted is not None:
            out = [covered[u] for u in wanted if u in covered]
            for vm_uuid, vm in wanted.items():
                if vm_uuid not in covered:
                    scope = "run %s" % run_id if run_id else "kvmsnap"
                    out.append({"name": vm["name"], "uuid": vm_uuid, "action": "none", "run_id": None,
                                "released": True, "released_by": "none", "released_at": None,
                                "release_result": "not quiesced by %s; left as is (%s)" % (scope, vm["state"])})
        result["vms"] = out
        result["changed"] = any(v.get("release_result") in ("resumed", "thawed", "would release") for v in out) \
            or bool(result["recovered"])
        failed = [v for v in out if v.get("release_error")]
        if failed:
            raise FenceError("vm_quiesce on %s: could not release %s; the journal stays open so the watchdog and "
                             "the next run retry." % (fence.where, "; ".join(v["release_error"] for v in failed)), result)
        if run_id is not None and not check_mode:  # the run's unlock: its locks on this host go (F18 (docs/dev/faults.md#f18))
            if wanted is None:
                result["unlocked"] = _lock.release_run(fence.state_dir, run_id)
            else:
                result["unlocked"] = _lock.release(fence.state_dir, list(wanted), run_id)
            result["changed"] = result["changed"] or bool(result["unlocked"])
        result["msg"] = "%s %d VM(s)" % ("would release" if check_mode else "released",
                                         sum(1 for v in out if v.get("action") != "none"))
        return result
    finally:
        result["warnings"] = fence.warnings
        fence.close()


# ---------------------------------------------------------------------------------------------
# vm_backup: quiesce → one consistent snapshot per controller → release, in one process


def domain_disks(xml: str) -> List[Dict[str, Any]]:
    """The disks of a domain XML: [{target, type, device, path, readonly}] (path None for network disks)."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(xml)
    disks = []
    for disk in root.findall("./devices/disk"):
        src = disk.find("source")
        dtype = disk.get("type") or "file"
        path = None
        if src is not None:
            path = src.get("file") if dtype == "file" else src.get("dev") if dtype == "block" else None
        tgt = disk.find("target")
        disks.append({"target": tgt.get("dev") if tgt is not None else None, "type": dtype,
                      "device": disk.get("device") or "disk", "path": path,
                      "readonly": disk.find("readonly") is not None,
                      "protocol": src.get("protocol") if src is not None else None})
    return disks


def parse_datastores(datastores: Any) -> List[Dict[str, str]]:
    """`datastores`: [{path, svm, volume}] — a host directory (the NFS mount of a volume) → that volume."""
    out = []
    for idx, entry in enumerate(datastores or []):
        if not isinstance(entry, dict):
            raise FenceError("datastores[%d]: expected a dict with path, svm and volume." % idx)
        missing = [k for k in ("path", "svm", "volume") if not entry.get(k)]
        if missing:
            raise FenceError("datastores[%d]: missing %s; expected {path: /mnt/ds1, svm: svm1, volume: vol_ds1}."
                             % (idx, ", ".join(missing)))
        path = str(entry["path"])
        if not os.path.isabs(path):
            raise FenceError("datastores[%d].path: %r must be an absolute path (the mount point of the volume)." % (idx, path))
        out.append({"path": os.path.realpath(path), "svm": str(entry["svm"]), "volume": str(entry["volume"])})
    return out


def parse_vm_mapping(vm_mapping: Any, controller: Optional[str] = None) -> List[Dict[str, Any]]:
    """`vm_mapping` (Snap Creator `VM1:ctrl:/vol/vol1/lun1;…` or a structured list) → [{vm, svm, volume, path}].

    One form everywhere, `vm:controller:path` as vm_info and Snap Creator's KVM_VM_MAPPING: parsing and its input
    rules live in _vm_mapping. vm_backup talks to one controller (CONTROLLER, its `hostname`): every entry must name
    it. ``svm`` is the structured form's explicit SVM, or None: then the SVM is the one that holds the volume on the
    controller (resolve_mapping_svms, once connected)."""
    from ansible_collections.kvmsnap.core.plugins.module_utils import _vm_mapping
    if vm_mapping is None or vm_mapping == "" or vm_mapping == []:
        return []
    try:
        entries = _vm_mapping.parse_vm_mapping(vm_mapping)
    except _vm_mapping.VmMappingError as err:
        raise FenceError(str(err)) from None
    out = []
    for entry in entries:
        if not entry.get("volume"):
            raise FenceError("vm_mapping entry %d (%s): path %r is not of the form /vol/<volume>/…; give volume "
                             "explicitly in the structured form." % (entry["index"], entry["vm"], entry["path"]))
        if controller is not None and entry["controller"].lower() != str(controller).lower():
            raise FenceError(
                "vm_mapping entry %d (%s): the controller field is %r, but this task's controller is %s (option "
                "hostname). vm_mapping takes %s, as vm_info and Snap Creator's KVM_VM_MAPPING do; the form "
                "vm:svm:/vol/<volume>/... of earlier releases is no longer accepted. Write %s:%s:%s (the SVM is the one "
                "holding volume %s), or the structured form {vm, controller, path, svm}. Nothing was quiesced."
                % (entry["index"], entry["vm"], entry["controller"], controller, _vm_mapping.FORM, entry["vm"],
                   _vm_mapping.format_controller(str(controller)), entry["path"], entry["volume"]))
        out.append({"vm": entry["vm"], "svm": entry.get("svm"), "volume": entry["volume"], "path": entry["path"]})
    return out


def resolve_mapping_svms(ontap: Any, volumes: List[tuple]) -> List[tuple]:
    """Fill the SVM of (None, volume) pairs (vm_mapping entries without svm) from the controller's volumes."""
    out: List[tuple] = []
    for svm, vol in volumes:
        if svm is None:
            svms = sorted({v.get("svm") for v in ontap.list_volumes(name=vol) if v.get("svm")})
            if len(svms) != 1:
                raise FenceError(
                    "vm_mapping: volume %s %s on ONTAP %s; give the SVM with the structured form {vm, controller, path, "
                    "svm}. Nothing was quiesced." % (vol, "exists in the SVMs %s" % ", ".join(svms) if svms
                                                     else "does not exist", ontap.hostname))
            svm = svms[0]
        if (svm, vol) not in out:
            out.append((svm, vol))
    return out


def map_vm_volumes(vms: List[Dict[str, Any]], xmls: Dict[str, str], datastores: List[Dict[str, str]],
                   mapping: List[Dict[str, str]]) -> Dict[str, Any]:
    """VM → volumes. Every disk must map (else one error listing every unmapped disk); read-only cdroms skipped."""
    per_vm: Dict[str, List[Dict[str, str]]] = {}
    unmapped: List[str] = []
    skipped: List[str] = []
    by_vm_map: Dict[str, List[Dict[str, str]]] = {}
    for entry in mapping:
        by_vm_map.setdefault(entry["vm"], []).append(entry)
    for vm in vms:
        vols: List[Dict[str, str]] = []
        explicit = by_vm_map.get(vm["name"], []) + by_vm_map.get(vm["uuid"], [])
        for entry in explicit:
            ref = {"svm": entry["svm"], "volume": entry["volume"]}
            if ref not in vols:
                vols.append(ref)
        for disk in domain_disks(xmls[vm["uuid"]]):
            if disk["device"] in ("cdrom", "floppy") and (disk["readonly"] or disk["device"] == "cdrom"):
                if disk["path"]:
                    skipped.append("%s: %s %s (%s) is not backed up"
                                   % (vm["name"], disk["device"], disk["target"], disk["path"]))
                continue
            if explicit:
                continue  # the explicit mapping names this VM's volumes
            path = disk["path"]
            if path is None:
                unmapped.append("%s: disk %s (%s %s) is not a file on a mapped datastore" % (
                    vm["name"], disk["target"], disk["type"], disk.get("protocol") or ""))
                continue
            real = os.path.realpath(path)
            best = None
            for ds in datastores:
                if real == ds["path"] or real.startswith(ds["path"].rstrip("/") + "/"):
                    if best is None or len(ds["path"]) > len(best["path"]):
                        best = ds
            if best is None:
                unmapped.append("%s: disk %s (%s) is on no datastore in datastores/vm_mapping" % (
                    vm["name"], disk["target"], path))
                continue
            ref = {"svm": best["svm"], "volume": best["volume"]}
            if ref not in vols:
                vols.append(ref)
        per_vm[vm["uuid"]] = vols
    return {"per_vm": per_vm, "unmapped": unmapped, "skipped": skipped}


def run_backup(params: Dict[str, Any], check_mode: bool = False,
               connect: Optional[Callable[[Dict[str, Any]], Any]] = None) -> Dict[str, Any]:
    """vm_backup: the whole fence of one host. Raises FenceError (with .result) on failure."""
    from ansible_collections.kvmsnap.core.plugins.module_utils import _snapshot_naming as naming
    mode = params.get("mode") or "auto"
    deadline = float(params["deadline"])
    fence = Fence(params.get("uri"), params["state_dir"], params.get("retries", 3), params.get("agent_timeout", 10),
                  "vm_backup", check_mode)
    run_id = _run_id_param(params) or _journal.new_run_id("backup")
    confirm = params.get("confirm", True)
    grace = float(params.get("confirm_grace") or CONFIRM_GRACE)
    result: Dict[str, Any] = {"changed": False, "vms": [], "snapshots": [], "recovered": [], "run_id": run_id,
                              "method": None, "trust": None}
    outcomes: List[Dict[str, Any]] = []
    try:
        # ---- pre-flight: nothing is touched before every check passed -------------------------------
        policy = params.get("policy") or "daily"
        try:
            name = params.get("name") or naming.default_name(policy)
            naming.validate_snapshot_name(name)
            # pending until confirmed; `until` is when this run can no longer confirm it (see until_for)
            until = until_for(time.time(), deadline, grace)
            comment = naming.build_comment(policy, run_id, host_token(params.get("kvm_host")), params.get("comment"),
                                           state="pending", until=until)
        except naming.SnapshotNameError as err:
            raise FenceError(str(err)) from None
        label = params.get("snapmirror_label")
        result.update(name=name, comment=comment)
        fence.prepare_state_dir()
        vms = resolve_vms(fence.sc.conn, params.get("vms") or [], fence.uri)
        volumes = _backup_volumes(fence, vms, params)
        result["volumes"] = ["%s:%s" % v for v in volumes]
        if connect is None:
            from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect as ontap_connect
            connect = ontap_connect
        ontap, existing, volumes = _ontap_preflight(connect, params, volumes, name, run_id)
        result["volumes"] = ["%s:%s" % v for v in volumes]
        if existing:
            # F11 (docs/dev/faults.md#f11): a rerun of a backup that is already complete changes nothing and quiesces nobody
            result["snapshots"] = [{"svm": s["svm"], "volume": s["volume"], "name": name, "uuid": s.get("uuid"),
                                    "create_time": s.get("create_time")} for s in existing]
            result["vms"] = [{"name": vm["name"], "uuid": vm["uuid"], "action": "none", "pause_ms": 0.0,
                              "consistency": None, "detail": "snapshot %s already taken" % name} for vm in vms]
            result["msg"] = ("snapshot %s already exists on %s with kvmsnap metadata; nothing quiesced"
                             % (name, ", ".join(result["volumes"])))
            return result
        result["recovered"] = fence.recover(skip=run_id)
        if result["recovered"]:
            vms = resolve_vms(fence.sc.conn, [vm["uuid"] for vm in vms], fence.uri)
        result["recovered_snapshots"] = _recover_orphans(ontap, volumes, check_mode, fence.warnings)
        if check_mode:
            _check_locks(fence.state_dir, vms, run_id)
            result["vms"] = _plan(vms, mode)
            result["changed"] = True
            result["msg"] = ("check mode: would quiesce %d VM(s) (mode %s), snapshot %s on %s and release them; "
                             "nothing touched" % (sum(1 for v in result["vms"] if v["action"] != "none"), mode, name,
                                                  ", ".join(result["volumes"])))
            return result
        # ---- the fence ------------------------------------------------------------------------------
        with release_on_signals():
            try:
                run = fence.start_run(vms, mode, deadline, release_on_owner_exit=True, run_id=run_id)
            except _lock.LockBusy as err:
                raise FenceError(str(err), dict(result, holder=err.holder)) from None
            result.update(run_id=run_id, lock_takeovers=run["takeovers"],
                          watchdog_pid=(run["watchdog"] or {}).get("pid"))
            deadline_mono = time.monotonic() + deadline
            try:
                outcomes = fence.quiesce(vms, mode, bool(params.get("allow_crash_consistent")), record=False)
            except BaseException:
                fence.emergency_release()
                raise
            failed = [o for o in outcomes if o.get("error")]
            snap: Dict[str, Any] = {}
            gang = None
            try:
                if not failed:
                    snap = _snapshot_within(ontap, volumes, name, comment, label, deadline_mono,
                                            lambda: fence.prepare_release(outcomes), until=until)
                    gang = snap.pop("gang", None)
            finally:
                fence.release(outcomes, gang=gang)  # always: success, error, timeout, signal
                fence.finish(outcomes, by="vm_backup run %s" % run_id)
        late = snap.pop("late", None)
        snap["was_late"] = late is not None
        if late is not None:  # released at the deadline; give the call a bounded time to finish (F3 (docs/dev/faults.md#f3))
            late.wait(LATE_WAIT)
            if "result" not in snap and "error" not in snap:
                snap["error"] = "no answer from ONTAP within %ds after the deadline" % LATE_WAIT
        for o in outcomes:
            if o["action"] != "none" and o.get("t_released"):
                o["pause_ms"] = _ms(o["t_quiesced"], o["t_released"])
            else:
                o["pause_ms"] = 0.0
        result["changed"] = True
        if failed:
            result["vms"] = [public_outcome(o) for o in outcomes]
            raise FenceError("vm_backup on %s: %d of %d VM(s) could not be quiesced (%s); no snapshot was taken and "
                             "the VMs already quiesced were released." % (
                                 fence.where, len(failed), len(outcomes), "; ".join(o["error"] for o in failed)), result)
        in_window = snap.get("done_in_window", False)
        for o in outcomes:
            if not in_window:
                o["consistency"] = "crash" if o["consistency"] != "offline" else "offline"
        result["vms"] = [public_outcome(o) for o in outcomes]
        result["snapshots"] = (snap.get("result") or {}).get("snapshots", [])
        result["method"] = (snap.get("result") or {}).get("method")
        result["consistency"] = weakest([o["consistency"] for o in outcomes]) if result["snapshots"] else None
        result["snapshot_ms"] = snap.get("ms")
        result["max_pause_ms"] = max([o["pause_ms"] for o in outcomes] or [0.0])
        released_errors = [o["release_error"] for o in outcomes if o.get("release_error")]
        if result["snapshots"] and not snap.get("error"):
            bad = _verify_snapshots(ontap, result["snapshots"], fence.warnings)
            if bad:
                snap["error"] = "the controller reports %s; not a usable backup" % "; ".join(bad)
        result["trust"] = _settle(ontap, volumes, name, run_id, result, snap, in_window, confirm, fence.warnings)
        if snap.get("error") or not in_window or released_errors:
            parts = []
            if snap.get("error") and in_window is False and late is not None:
                parts.append("the snapshot %s on %s did not complete within the deadline of %ds (%s); the VMs were "
                             "released at the deadline and no snapshot is recorded" % (
                                 name, ", ".join(result["volumes"]), deadline, snap["error"]))
            elif snap.get("error"):
                parts.append("the snapshot %s on %s failed: %s" % (name, ", ".join(result["volumes"]), snap["error"]))
            elif not in_window:
                parts.append("the snapshot %s on %s did not complete within the deadline of %ds; the VMs were "
                             "released at the deadline%s" % (
                                 name, ", ".join(result["volumes"]), deadline,
                                 " and it completed later: %s" % _trust_text(result["trust"]) if result["snapshots"]
                                 else "; no snapshot is recorded"))
            if released_errors:
                parts.append("release failed: %s" % "; ".join(released_errors))
            else:
                parts.append("every VM was released")
            raise FenceError("vm_backup on %s: %s." % (fence.where, "; ".join(parts)), result)
        result["msg"] = "snapshot %s of %s taken with %d VM(s) quiesced (mode %s); longest pause %.1f ms; %s" % (
            name, ", ".join(result["volumes"]), sum(1 for o in outcomes if o["action"] != "none"), mode,
            result["max_pause_ms"], _trust_text(result["trust"]))
        if result["trust"] == "confirm_failed":
            raise FenceError("vm_backup on %s: snapshot %s of %s was taken inside the window but could not be "
                             "confirmed (%s); it stays pending and is never used as a backup. Run the backup again."
                             % (fence.where, name, ", ".join(result["volumes"]),
                                result.get("trust_error")), result)
        return result
    except FenceInterrupted as err:
        result["vms"] = [public_outcome(o) for o in outcomes]
        raise FenceError("vm_backup on %s: %s; every VM quiesced by this run was released." % (fence.where, err),
                         result) from None
    finally:
        result["warnings"] = fence.warnings
        fence.close()


def _recover_orphans(ontap: Any, volumes: List[tuple], check_mode: bool, warnings: List[str]) -> Dict[str, Any]:
    """Before the fence: mark late what dead runs left pending on these volumes, remove their temp CGs."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import recover_orphans
    try:
        res = recover_orphans(ontap, list(volumes), check_mode=check_mode)
    except Exception as err:  # a failed clean-up never blocks a backup; the next run tries again
        warnings.append("recovery of orphaned snapshots on %s failed: %s; the next run tries again"
                        % (", ".join("%s:%s" % v for v in volumes), err))
        return {"marked_late": [], "removed_cgs": [], "error": str(err)}
    if res["marked_late"] or res["removed_cgs"]:
        warnings.append("recovered leftovers of dead runs: %s" % res["msg"])
    return {"marked_late": res["marked_late"], "removed_cgs": res["removed_cgs"]}


def _verify_snapshots(ontap: Any, snapshots: List[Dict[str, Any]], warnings: List[str]) -> List[str]:
    """P4 (docs/dev/faults.md#p4): read every new snapshot back (after the release) and require its state to be valid."""
    bad = []
    for snap in snapshots:
        try:
            found = ontap.get_snapshot(snap["svm"], snap["volume"], snap["name"])
        except Exception as err:
            warnings.append("could not read snapshot %s on %s:%s back: %s"
                            % (snap["name"], snap["svm"], snap["volume"], err))
            continue
        if not found:
            bad.append("snapshot %s missing on %s:%s" % (snap["name"], snap["svm"], snap["volume"]))
        elif found.get("state") not in (None, "valid"):
            bad.append("snapshot %s on %s:%s in state %s" % (snap["name"], snap["svm"], snap["volume"],
                                                             found.get("state")))
        else:
            snap["state"] = found.get("state") or "valid"
    return bad


def host_token(name: Optional[str] = None) -> str:
    """The snapshot comment's `host=`: NAME (the inventory name the roles pass as kvm_host), else the OS hostname;
    characters the comment does not allow become '_'."""
    import re
    import socket
    host = re.sub(r"[^A-Za-z0-9_.:@-]", "_", name or socket.gethostname())[:60]
    return host or "host"


def _backup_volumes(fence: Fence, vms: List[Dict[str, Any]], params: Dict[str, Any]) -> List[tuple]:
    """The (svm, volume) set of the run: explicit `volumes`, or the volumes under the VMs' disks."""
    explicit: List[tuple] = []
    if params.get("volumes"):
        from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError, parse_volumes
        try:
            explicit = parse_volumes(params["volumes"], None)
        except OptionError as err:
            raise FenceError(str(err)) from None
    datastores = parse_datastores(params.get("datastores"))
    mapping = parse_vm_mapping(params.get("vm_mapping"), params.get("hostname"))
    if not datastores and not mapping:
        if not explicit:
            raise FenceError("vm_backup: no volume to snapshot; give volumes, datastores or vm_mapping so every "
                             "disk of %s maps to an ONTAP volume." % ", ".join(vm["name"] for vm in vms))
        return explicit
    xmls = {vm["uuid"]: fence.sc.call(lambda conn, _a, u=vm["uuid"]: fence.sc.domain(conn, u).XMLDesc(0)) for vm in vms}
    mapped = map_vm_volumes(vms, xmls, datastores, mapping)
    for note in mapped["skipped"]:
        fence.warnings.append(note)
    if mapped["unmapped"]:
        raise FenceError("vm_backup: %d disk(s) are not on a mapped ONTAP volume: %s. Add their datastore to "
                         "datastores (or the VM to vm_mapping), or detach them; nothing was quiesced."
                         % (len(mapped["unmapped"]), "; ".join(mapped["unmapped"])))
    out = list(explicit)
    for vm in vms:
        if not mapped["per_vm"][vm["uuid"]] and vm["state"] != "shutoff":
            fence.warnings.append("VM %s has no disk on a mapped volume" % vm["name"])
        for ref in mapped["per_vm"][vm["uuid"]]:
            pair = (ref["svm"], ref["volume"])
            if pair not in out:
                out.append(pair)
    if not out:
        raise FenceError("vm_backup: the VMs %s have no disk on any mapped volume; nothing to snapshot."
                         % ", ".join(vm["name"] for vm in vms))
    return out


def _ontap_preflight(connect: Callable[[Dict[str, Any]], Any], params: Dict[str, Any], volumes: List[tuple],
                     name: str, run_id: Optional[str] = None) -> Tuple[Any, List[Dict[str, Any]], List[tuple]]:
    """Connect and check every volume exists (F16 (docs/dev/faults.md#f16)); return the client, the snapshots NAME
    already has and the volumes (the SVM of vm_mapping entries without one filled in).

    A rerun whose snapshot already exists on every volume as run RUN_ID's or as a confirmed (good) backup is a no-op
    (F11 (docs/dev/faults.md#f11)); any other existing snapshot of that name is refused, never overwritten
    (_snapshot_naming.existing_set decides).
    """
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import OptionError
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
    from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import existing_set
    try:
        ontap = connect(params, "vm_backup")
        # the login may create and confirm snapshots: checked before any VM is quiesced (docs/security.md)
        rights = ontap.privileges_for(["read", "snapshot_create", "snapshot_modify"])
        if not rights["ok"]:
            raise FenceError("vm_backup pre-flight on ONTAP %s: %s; nothing was quiesced. %s"
                             % (params.get("hostname"), rights["message"], rights["hint"]))
        volumes = resolve_mapping_svms(ontap, volumes)
        missing, existing = [], []
        found: Dict[str, Optional[Dict[str, Any]]] = {}
        for svm, vol in volumes:
            try:
                ontap.get_volume(svm, vol)
            except OntapError as err:
                if err.is_not_found:
                    missing.append("%s:%s" % (svm, vol))
                    continue
                raise
            found["%s:%s" % (svm, vol)] = None
            for snap in ontap.list_snapshots(svm, vol, name):
                if snap.get("name") == name:
                    existing.append(dict(snap, svm=svm, volume=vol))
                    found["%s:%s" % (svm, vol)] = existing[-1]
    except (OntapError, OptionError) as err:
        raise FenceError("vm_backup pre-flight on ONTAP %s failed: %s; nothing was quiesced."
                         % (params.get("hostname"), err)) from None
    if missing:
        raise FenceError("vm_backup: volume(s) %s not found on ONTAP %s; nothing was quiesced. Check the SVM and "
                         "volume names in volumes/datastores/vm_mapping." % (", ".join(missing), params.get("hostname")))
    verdict = existing_set(name, found, run_id, accept="good")
    if verdict["verdict"] == "clash":
        raise FenceError("vm_backup on ONTAP %s: %s; choose another name — existing snapshots are never overwritten. "
                         "Nothing was quiesced." % (params.get("hostname"), verdict["reason"]))
    return ontap, existing, volumes


def _snapshot_within(ontap: Any, volumes: List[tuple], name: str, comment: str, label: Optional[str],
                     deadline_mono: float, while_waiting: Optional[Callable[[], Any]] = None,
                     until: Optional[int] = None) -> Dict[str, Any]:
    """create_snapshot_set in a worker thread; wait until the deadline at most (F3 (docs/dev/faults.md#f3)).

    Returns {result, error, ms, done_in_window}. After the deadline the caller releases the VMs;
    the worker keeps going and is given a short bounded time afterwards to learn the outcome.
    """
    box: Dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        t0 = time.monotonic()
        try:
            box["result"] = ontap.create_snapshot_set(list(volumes), name, comment=comment, snapmirror_label=label,
                                                      until=until)  # a temp CG left by a crash expires with it
        except Exception as err:  # reported to the caller
            box["error"] = str(err)
        box["ms"] = _ms(t0, time.monotonic())
        done.set()

    worker = threading.Thread(target=work, name="kvmsnap-snapshot", daemon=True)
    worker.start()
    if while_waiting is not None:  # e.g. start the release workers while the controller works
        box["gang"] = while_waiting()
    left = deadline_mono - time.monotonic()
    if done.wait(max(0.0, left)):
        box["done_in_window"] = "error" not in box
        return box
    box["done_in_window"] = False
    box["late"] = done
    return box


LATE_WAIT = 10.0  # seconds to learn the outcome of a snapshot still running at the deadline (after the release)
# seconds after the fence's deadline in which the run may still confirm its snapshot (read-back, verification
# by the role, the confirm call itself); past `until` a pending snapshot is an orphan that recovery marks late
CONFIRM_GRACE = 300.0


def until_for(fence_start: float, deadline: float, grace: float) -> int:
    """The `until` of a snapshot comment: fence start + deadline + confirm grace (epoch seconds, rounded up)."""
    return int(fence_start + deadline + grace) + 1


def _trust_text(trust: Optional[str]) -> str:
    return {"good": "confirmed good", "late": "marked late (crash-consistent; never used as a backup)",
            "pending": "left pending: the role confirms it after verification",
            "pending_late": "still pending (not confirmable: the next run or the recovery playbook marks it late)",
            "confirm_failed": "NOT confirmed (stays pending; never used as a backup)"}.get(trust or "", "no snapshot")


def _settle(ontap: Any, volumes: List[tuple], name: str, run_id: str, result: Dict[str, Any],
            snap: Dict[str, Any], in_window: bool, confirm: bool, warnings: List[str]) -> Optional[str]:
    """After the release: confirm the snapshot good (done in the window, read back valid), or mark it late.

    A snapshot still running after LATE_WAIT cannot be marked (it may not exist yet): it stays pending and
    the next run's recovery marks it late once its `until` has passed.
    """
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_snapshot_ops import confirm_snapshot_set
    if not result["snapshots"]:  # still running after LATE_WAIT: it may appear later, pending
        return "pending_late" if snap.get("was_late") and "result" not in snap else None
    good = in_window and not snap.get("error")
    if good and not confirm:
        return "pending"
    state = "good" if good else "late"
    consistency = result["consistency"] if good else "crash"
    try:
        confirm_snapshot_set(ontap, list(volumes), name, run_id, state=state, consistency=consistency)
    except Exception as err:  # the snapshot stays pending: never a backup
        result["trust_error"] = str(err)
        if good:
            return "confirm_failed"
        warnings.append("could not mark the late snapshot %s late (%s); the next run's recovery marks it"
                        % (name, err))
        return "pending_late"
    return state
