# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_verify: boot throwaway copies of backed-up VMs from a snapshot and report whether they came up.

This module util is PRIVATE to the collection. It may change without notice.

Nothing is written to the snapshot or to the original VM: each copy runs from qcow2 overlays in its own
directory under the work dir whose backing files are the read-only images under ``.snapshot/<name>/`` (format
given explicitly, never relabelled by libvirt), as a transient domain with a new name, UUID and MACs, and no
network but an isolated one. Every copy is destroyed and its directory deleted when its check ends, when the run
fails and when it is interrupted (SIGTERM/SIGINT/SIGHUP); a copy a killed run left behind is recognised by its
name and directory and removed by the next run, under the work dir's lock.

``run(params, check_mode)`` returns the module's result (see plugins/modules/vm_verify.py).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid as _uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy, _domain_xml, _ds_paths, _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils import _verify_boot_xml as vx
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._verify_boot_size import plan_parallel, read_available_mib

DEFAULT_WORK_DIR = "/var/lib/kvmsnap-verify"
LOCK_FILE = ".lock"
POLL = 0.5


class VerifyBootError(KvmsnapError):
    """The run cannot start (options, work dir, lock, network); nothing was started."""


class Interrupted(Exception):
    """A signal ended the run; the copies are destroyed on the way out."""


# ---------------------------------------------------------------------------------------------
# checks before anything starts


def check_work_dir(path: str, forbidden: List[str]) -> None:
    """WORK_DIR: absolute, not /, outside the datastores, and every existing ancestor searchable by others (QEMU
    runs as its own user and must reach the overlays)."""
    if not path or not os.path.isabs(path) or os.path.normpath(path) == "/":
        raise VerifyBootError("work_dir: %r; allowed: an absolute directory other than / (default %s)."
                              % (path, DEFAULT_WORK_DIR))
    norm = os.path.normpath(path)
    for root in forbidden:
        r = os.path.normpath(root)
        if norm == r or norm.startswith(r.rstrip("/") + "/") or r.startswith(norm.rstrip("/") + "/"):
            raise VerifyBootError("work_dir: %s overlaps datastore %s; the copies' overlays never go into a "
                                  "datastore or a snapshot. Choose a local directory (default %s)."
                                  % (norm, r, DEFAULT_WORK_DIR))
    probe = norm
    while True:
        if os.path.exists(probe):
            mode = os.stat(probe).st_mode
            if not mode & stat.S_IXOTH:
                raise VerifyBootError("work_dir: %s lies under %s (mode %o), which QEMU's user cannot enter; choose a "
                                      "directory outside private homes (default %s)."
                                      % (norm, probe, stat.S_IMODE(mode), DEFAULT_WORK_DIR))
        if probe == "/":
            break
        probe = os.path.dirname(probe)


def check_command(command: List[str]) -> None:
    if command and (not isinstance(command[0], str) or not command[0].strip()):
        raise VerifyBootError("command: the first entry must be the program to run in the guest (a path), e.g. "
                              "['/bin/sh', '-c', 'systemctl is-system-running'].")


def check_network(conn: Any, name: Optional[str]) -> None:
    """NAME must be an active libvirt network without <forward> (isolated), or None."""
    if not name:
        return
    try:
        net = conn.networkLookupByName(name)
        xml = net.XMLDesc(0)
        active = net.isActive()
    except Exception as exc:
        raise VerifyBootError("network: libvirt network %r not found (%s); name an isolated network (no <forward>) "
                              "or leave kvmsnap_verify_network empty for no network." % (name, exc)) from None
    forward = _domain_xml.ET.fromstring(xml).find("forward")
    if forward is not None:
        raise VerifyBootError("network: libvirt network %r forwards to the host's networks (<forward mode=%r>); the "
                              "copies would be reachable from and reach the originals' networks. Name an isolated "
                              "network (no <forward>)." % (name, forward.get("mode")))
    if not active:
        raise VerifyBootError("network: libvirt network %r is not active; start it (virsh net-start %s)."
                              % (name, name))


def _qemu_img() -> str:
    found = shutil.which("qemu-img")
    if not found:
        raise VerifyBootError("qemu-img not found on the KVM host; install it (package qemu-utils or qemu-img).")
    return found


def image_info(path: str, fmt: str) -> Dict[str, Any]:
    """qemu-img info of a snapshot image, opened read-only with its format given (never probed)."""
    proc = subprocess.run([_qemu_img(), "info", "--output=json", "-f", fmt, "-U", path], capture_output=True,
                          text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ValueError("qemu-img info failed: %s" % (proc.stderr.strip()[-300:] or proc.returncode))
    return json.loads(proc.stdout)


def _datastore_of(path: str, datastores: List[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    best = None
    for ds in datastores:
        if _ds_paths.rel_to(ds["path"], path) is not None and (best is None or len(ds["path"]) > len(best["path"])):
            best = ds
    return best


def plan_vm(vm: Mapping[str, Any], params: Mapping[str, Any], host: Mapping[str, Any]) -> Dict[str, Any]:
    """One VM's copy plan, or the reason it cannot be copied: {name, uuid, memory_mib, disks, agent, reason, san}."""
    name, uuid = vm.get("name") or "?", vm.get("uuid") or "?"
    out: Dict[str, Any] = {"name": name, "uuid": uuid, "disks": [], "reason": None, "san": False, "notes": []}
    xml = str(vm.get("xml") or "")
    try:
        _record, problems = _domain_xml.check_saved(xml, expected_uuid=vm.get("uuid"), expected_name=vm.get("name"))
        if problems:
            out["reason"] = "domain XML refused: %s" % "; ".join(problems)
            return out
        policy = _domain_policy.check(xml, [d["path"] for d in params["datastores"]], dict(host))
        if policy["refused"]:
            out["reason"] = "domain XML refused by the policy: %s" % "; ".join(policy["refused"])
            return out
        out["xml"] = policy["xml"]
        out["notes"] += policy["rewritten"]
        out["agent"] = bool(_domain_xml.parse_domain_xml(out["xml"])["agent"]["present"])
        out["memory_mib"] = vx.memory_mib(out["xml"])
        disks = vx.disk_plan(out["xml"])
    except (_domain_xml.DomainXmlError, _domain_policy.PolicyError, vx.VerifyXmlError) as exc:
        out["reason"] = "domain XML refused: %s" % exc
        return out
    if disks["san"]:
        out.update(san=True, reason="not verified (SAN): %s" % "; ".join(disks["san"]))
        return out
    if disks["refused"]:
        out["reason"] = "cannot be copied: %s" % "; ".join(disks["refused"])
        return out
    for disk in disks["disks"]:
        ds = _datastore_of(disk["path"], params["datastores"])
        if ds is None:
            out["reason"] = ("disk %s (%s) is in none of the host's datastores (%s)"
                             % (disk["target"], disk["path"], ", ".join(d["path"] for d in params["datastores"])))
            return out
        snapdir = os.path.realpath(_ds_paths.snapshot_dir(ds["path"], ds.get("offset") or "/", params["snapshot"]))
        rel = _ds_paths.rel_to(ds["path"], disk["path"]) or "/"
        backing = os.path.normpath(snapdir + rel)
        if _domain_policy.path_under(backing, [snapdir]) is None or not os.path.isfile(backing):
            out["reason"] = ("disk %s: %s is not a regular file inside the snapshot directory %s (missing, or "
                             "reached through a symlink)" % (disk["target"], backing, snapdir))
            return out
        try:
            info = image_info(backing, disk["format"])
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            out["reason"] = "disk %s: %s cannot be read as %s: %s" % (disk["target"], backing, disk["format"], exc)
            return out
        if info.get("backing-filename"):
            out["reason"] = ("disk %s: %s has a backing file of its own (%s); a copy opens nothing outside the "
                             "snapshot" % (disk["target"], backing, info["backing-filename"]))
            return out
        out["disks"].append({"target": disk["target"], "backing": backing, "format": disk["format"],
                             "size": int(info.get("virtual-size") or 0), "snapdir": snapdir})
    nvram = vm.get("nvram_file")
    if nvram and _domain_policy.path_under(nvram, params["nvram_roots"]) is None:
        out["reason"] = "its saved NVRAM %s lies outside the snapshot and the local catalog" % nvram
        return out
    out["nvram_file"] = nvram
    if not out["agent"] and not params.get("boot_marker"):
        out["reason"] = ("no guest agent channel and no boot_marker (kvmsnap_verify_boot_marker): nothing can tell "
                         "that it booted")
    return out


# ---------------------------------------------------------------------------------------------
# one copy


def _agent(dom: Any, payload: Dict[str, Any], timeout: int) -> Any:
    import libvirt_qemu  # optional, as libvirt itself (_libvirt guards the module's import)
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), int(timeout), 0)).get("return")


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Copy:
    """One copy: prepare → start → wait → check → destroy (destroy is idempotent and thread-safe)."""

    def __init__(self, plan: Dict[str, Any], params: Mapping[str, Any], token: str,
                 stop: threading.Event) -> None:
        self.plan, self.params, self.stop = plan, params, stop
        self.name = vx.copy_name(plan["name"], token)
        self.dir = os.path.join(params["work_dir"], self.name)
        self.console = os.path.join(self.dir, "console.log")
        self.dom: Any = None
        self.lock = threading.Lock()
        self.result: Dict[str, Any] = {"name": plan["name"], "uuid": plan["uuid"], "copy": self.name, "booted": False,
                                       "agent_seconds": None, "boot_seconds": None, "check": None, "verified": False,
                                       "reason": None, "notes": list(plan["notes"]), "disks": []}

    def run(self, conn: Any) -> Dict[str, Any]:
        try:
            self._prepare()
            started = time.monotonic()
            with self.lock:
                if self.stop.is_set():
                    raise Interrupted()
                self.dom = conn.createXML(self.xml, 0)  # transient: gone from libvirt once destroyed
            self._wait(started)
            self._check()
            self.result["verified"] = self.result["booted"] and (
                self.result["check"] is None or self.result["check"]["rc"] == 0)
            if not self.result["verified"] and self.result["reason"] is None:
                self.result["reason"] = "the check command exited with %s" % self.result["check"]["rc"]
        except Interrupted:
            self.result["reason"] = "interrupted (the run was stopped); the copy was destroyed"
        except Exception as exc:
            self.result["reason"] = str(exc)
            self.result["console_tail"] = _tail(self.console)
        finally:
            self.destroy()
        return self.result

    def _prepare(self) -> None:
        os.mkdir(self.dir, 0o711)
        os.chmod(self.dir, 0o711)
        overlays: Dict[str, Dict[str, str]] = {}
        for disk in self.plan["disks"]:
            overlay = os.path.join(self.dir, "%s.qcow2" % disk["target"])
            proc = subprocess.run([_qemu_img(), "create", "-q", "-f", "qcow2", "-F", disk["format"], "-b",
                                   disk["backing"], "-u", overlay, str(disk["size"])], capture_output=True,
                                  text=True, timeout=60, check=False)
            if proc.returncode != 0:
                raise VerifyBootError("overlay %s for disk %s: qemu-img create failed: %s"
                                      % (overlay, disk["target"], proc.stderr.strip()[-300:]))
            overlays[disk["target"]] = {"path": overlay, "backing": disk["backing"], "format": disk["format"]}
            self.result["disks"].append({"target": disk["target"], "backing": disk["backing"], "overlay": overlay})
        nvram = None
        if self.plan.get("nvram_file"):
            nvram = os.path.join(self.dir, "nvram.fd")
            shutil.copyfile(self.plan["nvram_file"], nvram)
        copy = vx.copy_xml(self.plan["xml"], {
            "name": self.name, "uuid": vx.new_uuid(), "original": self.plan["name"],
            "snapshot": self.params["snapshot"], "overlays": overlays, "network": self.params.get("network"),
            "nvram": nvram, "console_log": self.console})
        problems = vx.copy_paths_problems(copy["xml"], self.dir, sorted({d["snapdir"] for d in self.plan["disks"]}),
                                          self.params["host_dirs"])
        if problems:
            raise VerifyBootError("the copy of VM %s would reach outside its directory and the snapshot: %s; not "
                                  "started" % (self.plan["name"], "; ".join(problems)))
        self.result["notes"] += copy["notes"]
        self.xml = copy["xml"]

    def _alive(self) -> bool:
        try:
            return bool(self.dom.isActive())
        except Exception:
            return False

    def _wait(self, started: float) -> None:
        timeout = self.params["boot_timeout"]
        marker = re.compile(self.params["boot_marker"]) if self.params.get("boot_marker") else None
        while time.monotonic() - started < timeout:
            if self.stop.is_set():
                raise Interrupted()
            if not self._alive():
                raise VerifyBootError("the copy stopped %.1fs after its start (crashed, or the guest powered off) "
                                      "before it %s" % (time.monotonic() - started,
                                                        "answered guest-ping" if self.plan["agent"]
                                                        else "printed the boot marker"))
            if self.plan["agent"]:
                try:
                    _agent(self.dom, {"execute": "guest-ping"}, 2)
                    self.result["agent_seconds"] = round(time.monotonic() - started, 1)
                    break
                except Exception:
                    pass
            elif marker is not None and marker.search(_tail(self.console, 65536)):
                break
            time.sleep(POLL)
        else:
            raise VerifyBootError("the copy did not %s within %ds (kvmsnap_verify_timeout)" % (
                "answer guest-ping" if self.plan["agent"] else "print the boot marker %r" % self.params["boot_marker"],
                timeout))
        self.result["booted"] = True
        self.result["boot_seconds"] = round(time.monotonic() - started, 1)

    def _check(self) -> None:
        command = self.params.get("command") or []
        if not command:
            return
        if not self.plan["agent"]:
            raise VerifyBootError("the check command needs the guest agent; the VM has no agent channel")
        limit = self.params["output_limit"]
        res: Dict[str, Any] = {"command": command, "rc": None, "stdout": "", "stderr": "", "truncated": False}
        self.result["check"] = res
        pid = _agent(self.dom, {"execute": "guest-exec", "arguments": {
            "path": command[0], "arg": list(command[1:]), "capture-output": True}}, 10)["pid"]
        started = time.monotonic()
        while True:
            if self.stop.is_set():
                raise Interrupted()
            status = _agent(self.dom, {"execute": "guest-exec-status", "arguments": {"pid": pid}}, 10)
            if status.get("exited"):
                break
            if time.monotonic() - started > self.params["command_timeout"]:
                res["rc"] = -1
                raise VerifyBootError("the check command did not finish within %ds" % self.params["command_timeout"])
            time.sleep(POLL)
        res["rc"] = status.get("exitcode", -1 if status.get("signal") else 0)
        for key, field in (("stdout", "out-data"), ("stderr", "err-data")):
            data = base64.b64decode(status.get(field) or "")
            cut = bool(status.get(field.replace("data", "truncated")))
            res["truncated"] = res["truncated"] or len(data) > limit or cut
            res[key] = data[:limit].decode("utf-8", "replace")

    def destroy(self) -> None:
        with self.lock:
            if self.dom is not None:
                try:
                    self.dom.destroy()
                except Exception:
                    pass
                self.dom = None
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# leftovers, lock, run


def cleanup_leftovers(conn: Any, work_dir: str) -> List[str]:
    """Remove what killed runs left: domains named kvmsnap-verify-* that say they are a copy, and copy dirs."""
    gone: List[str] = []
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
            if not vx.is_copy_name(name) or vx.COPY_MARK not in dom.XMLDesc(0):
                continue
            persistent = dom.isPersistent()  # a transient domain is gone once destroyed
            if dom.isActive():
                dom.destroy()
            if persistent:
                dom.undefine()
            gone.append("domain %s" % name)
        except Exception:
            continue
    for entry in sorted(os.listdir(work_dir)):
        path = os.path.join(work_dir, entry)
        if vx.is_copy_name(entry) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            gone.append("directory %s" % path)
    return gone


def _lock(work_dir: str) -> int:
    fd = os.open(os.path.join(work_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise VerifyBootError("work_dir %s is locked by another verify run on this host; wait for it to end."
                              % work_dir) from None
    return fd


def _signals(handler: Callable[..., None]) -> Dict[int, Any]:
    old: Dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return old
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        old[sig] = signal.signal(sig, handler)
    return old


def run(params: Mapping[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """Plan every VM, size the parallelism, boot the copies (not in check mode); the module's result."""
    p = dict(params)
    offsets = p.get("datastore_offsets") or {}
    p["datastores"] = [{"path": os.path.normpath(d), "offset": _ds_paths.clean(offsets.get(d))}
                       for d in p["datastores"]]
    check_work_dir(p["work_dir"], [d["path"] for d in p["datastores"]])
    check_command(p.get("command") or [])
    if "/" in p["snapshot"] or p["snapshot"] in (".", ".."):
        raise VerifyBootError("snapshot: %r is not a snapshot name." % p["snapshot"])
    if p.get("boot_marker"):
        try:
            re.compile(p["boot_marker"])
        except re.error as exc:
            raise VerifyBootError("boot_marker: %r is not a regular expression: %s." % (p["boot_marker"], exc)) from None
    p["nvram_roots"] = [_ds_paths.snapshot_dir(d["path"], d["offset"], p["snapshot"]) for d in p["datastores"]]
    p["nvram_roots"].append(os.path.join(p["state_dir"], "catalog", p["snapshot"]))
    host_name = p.get("host") or "KVM host"
    result: Dict[str, Any] = {"changed": False, "snapshot": p["snapshot"], "vms": [], "verified": False,
                              "not_verified": [], "parallel": {}, "cleaned": [], "network": p.get("network")}
    session = _libvirt.LibvirtSession(p["uri"], readonly=check_mode, retries=p["retries"])
    try:
        conn = session.conn
        facts = session.call(_domain_policy.host_facts)
        facts["firmware_dirs"] = list(facts["firmware_dirs"]) + list(p.get("boot_dirs") or [])
        p["host_dirs"] = facts["firmware_dirs"]
        check_network(conn, p.get("network"))
        plans = [plan_vm(vm, p, facts) for vm in p["vms"]]
        runnable = [pl for pl in plans if pl["reason"] is None]
        sizing = plan_parallel(p["parallel"], [pl["memory_mib"] for pl in runnable], read_available_mib(),
                               p["memory_reserve"])
        result["parallel"] = sizing
        for idx in sizing["too_big"]:
            runnable[idx]["reason"] = ("needs %d MiB for its copy; the host has %s MiB available (reserve %d MiB)"
                                       % (runnable[idx]["memory_mib"], sizing["available_mib"], p["memory_reserve"]))
        runnable = [pl for pl in runnable if pl["reason"] is None]
        if check_mode:
            for pl in runnable:
                pl["reason"] = "not started (check mode): a copy would boot from the snapshot"
            result["vms"] = [_planned(pl) for pl in plans]
            result["not_verified"] = [{"vm": pl["name"], "reason": pl["reason"]} for pl in plans if pl["reason"]]
            result["msg"] = "%s: would boot %d copy(ies) of snapshot %s, %d at once (check mode)" % (
                host_name, len(runnable), p["snapshot"], sizing["chosen"])
            return result
        if not os.path.isdir(p["work_dir"]):
            os.makedirs(p["work_dir"], 0o711)
        lock_fd = _lock(p["work_dir"])
        try:
            result["cleaned"] = cleanup_leftovers(conn, p["work_dir"])
            result["changed"] = bool(result["cleaned"])
            results = _boot_all(conn, runnable, p, sizing["chosen"])
        finally:
            os.close(lock_fd)
        by_name = {r["name"]: r for r in results}
        for pl in plans:
            result["vms"].append(by_name.get(pl["name"]) or _planned(pl))
    finally:
        session.close()
    result["not_verified"] = [{"vm": r["name"], "reason": r["reason"]} for r in result["vms"] if not r["verified"]]
    result["verified"] = bool(result["vms"]) and not result["not_verified"]
    result["msg"] = "%s: snapshot %s: %d of %d VM(s) booted and passed%s" % (
        host_name, p["snapshot"], sum(1 for r in result["vms"] if r["verified"]), len(result["vms"]),
        "; NOT verified: %s" % "; ".join("%s: %s" % (n["vm"], n["reason"]) for n in result["not_verified"])
        if result["not_verified"] else "")
    return result


def _planned(pl: Mapping[str, Any]) -> Dict[str, Any]:
    return {"name": pl["name"], "uuid": pl["uuid"], "copy": None, "booted": False, "agent_seconds": None,
            "boot_seconds": None, "check": None, "verified": False, "reason": pl["reason"], "san": pl["san"],
            "notes": pl["notes"], "disks": [{"target": d["target"], "backing": d["backing"], "overlay": None}
                                            for d in pl["disks"]]}


def _boot_all(conn: Any, plans: List[Dict[str, Any]], p: Mapping[str, Any], workers: int) -> List[Dict[str, Any]]:
    """Run the copies, at most p['parallel'] (sized) at once; destroy them all on any way out."""
    if not plans:
        return []
    stop = threading.Event()
    token = _uuid.uuid4().hex[:8]
    copies = [Copy(pl, p, token, stop) for pl in plans]

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        raise Interrupted("signal %d" % signum)

    old = _signals(on_signal)
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(copies), workers)))
    try:
        futures = [pool.submit(c.run, conn) for c in copies]
        return [f.result() for f in futures]
    except Interrupted as exc:
        stop.set()
        for c in copies:
            c.destroy()
        raise VerifyBootError("vm_verify on %s was interrupted (%s); every copy it started was destroyed and its "
                              "overlays deleted; the snapshot is not marked verified."
                              % (p.get("host") or "the KVM host", exc),
                              {"vms": [c.result for c in copies], "verified": False}) from None
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for c in copies:  # module-level clean-up: whatever a worker has not destroyed yet
            c.destroy()
        pool.shutdown(wait=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)
