# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain side of a restore (vm_restore): validate a saved domain XML, stop, define, NVRAM, start, verify.

This module util is PRIVATE to the collection. It may change without notice.

The saved XML is untrusted input (docs/security.md): it must parse (no DTD/entities), carry a name and UUID
matching the target, and pass the allow-list policy of _domain_policy with the host's own emulator and
firmware dirs (every disk, NVRAM, loader inside ``allowed_paths``; unsafe character devices rewritten to pty;
passthrough refused); no other VM of the host may use its disks. Validation runs before anything is touched,
and the XML that is defined is the policy's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy, _domain_xml, _journal, _libvirt, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTOFF = 5


class RestoreError(KvmsnapError):
    """The restore was refused or failed; ``result`` holds what was done so far."""


# ---------------------------------------------------------------------------------------------
# pure validation


def validate_domain_xml(xml: str, allowed_paths: List[str], expected_uuid: Optional[str] = None,
                        expected_name: Optional[str] = None, host: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Check a saved domain XML; return {name, uuid, disks, nvram, agent_channel, sha256, xml, rewritten}.

    XML is what to define (the policy's rewrites applied), HOST the host's facts (_domain_policy.host_facts).
    Form and identity: _domain_xml.check_saved, the same check the manifest reader applies.
    Raises RestoreError naming every problem."""
    try:
        record, problems = _domain_xml.check_saved(xml, expected_uuid, expected_name)
    except _domain_xml.DomainXmlError as err:
        raise RestoreError("%s (untrusted input); nothing was changed." % err) from None
    name, vm_uuid = record["name"], record["uuid"]
    # what the XML may contain: the one allow-list policy (emulator, character devices, devices, paths)
    policy = _domain_policy.check(xml, allowed_paths, host)
    problems += policy["refused"]
    # a snapshot also holds the overlay files of VMs that ran on them: the live state after the point in time,
    # never a backup (docs/dev/overlay.md)
    problems += ["disk %s names the kvmsnap overlay file %s; restores never use overlay files (the snapshot's base "
                 "image is the backup)" % (d["target"] or "?", d["path"]) for d in record["disks"]
                 if is_overlay_path(d["path"])]
    disks = [{"target": d["target"] or "?", "path": d["path"], "type": d["type"], "device": d["device"]}
             for d in record["disks"] if d["path"]]
    if problems:
        raise RestoreError("refusing the saved domain XML of %s: %s. Nothing was changed." % (
            name or expected_name or "?", "; ".join(problems)))
    return {"name": name, "uuid": vm_uuid, "disks": disks, "nvram": record["nvram"],
            "agent_channel": record["agent"]["present"],
            "sha256": hashlib.sha256(xml.encode("utf-8")).hexdigest(), "xml": policy["xml"],
            "rewritten": policy["rewritten"]}


def read_xml_file(path: str) -> str:
    """Read a saved XML file: a regular file, not a symlink (its size is checked by _domain_xml)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        raise RestoreError("domain_xml_path: cannot open %s: %s (symlinks are refused)." % (path, err.strerror)) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise RestoreError("domain_xml_path: %s is not a regular file." % path)
        data = fh.read(_domain_xml.MAX_XML_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RestoreError("domain_xml_path: %s is not UTF-8 text." % path) from None


def copy_nvram(src: str, dest: str) -> None:
    """Copy the saved NVRAM file SRC to DEST atomically (tmp + rename), 0600, never following symlinks."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise RestoreError("nvram: %s is not a regular file." % src)
        data = fh.read()
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    write_file_atomic(dest, data)


# ---------------------------------------------------------------------------------------------
# the restore


def _state(dom: Any) -> str:
    return _libvirt.state_name(dom.state()[0])


def agent_ping(dom: Any, timeout: int) -> bool:
    import libvirt_qemu  # optional, as libvirt itself (_libvirt guards the module's import)
    try:
        libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), int(timeout), 0)
        return True
    except Exception:
        return False


def run_restore(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_restore. Raises RestoreError (with .result) when refused or failed."""
    lv = _libvirt
    uri = params.get("uri") or lv.DEFAULT_URI
    allowed = [os.path.realpath(p) for p in (params.get("allowed_paths") or [])]
    result: Dict[str, Any] = {"changed": False, "actions": [], "agent": None, "existed": False}
    if params.get("domain_xml_path"):
        xml = read_xml_file(params["domain_xml_path"])
    else:
        xml = params.get("domain_xml") or ""
    # parse once without expectations to learn the identity, then look up the target (boot files: host facts)
    info = validate_domain_xml(xml, allowed, host={"firmware_dirs": list(_domain_policy.FIRMWARE_DIRS) + list(
        params.get("boot_dirs") or [])})
    conn = lv.open_connection(uri, readonly=check_mode, retries=params.get("retries", 3))
    try:
        host = _domain_policy.host_facts(conn)
        host["firmware_dirs"] = list(host["firmware_dirs"]) + list(params.get("boot_dirs") or [])
        info = validate_domain_xml(xml, allowed, host=host)
        dom = None
        target = params.get("vm")
        if target:
            try:
                dom = lv.lookup_domain(conn, target)
            except lv.DomainNotFound:
                if lv.is_uuid(target):
                    if target.lower() != info["uuid"]:
                        raise RestoreError("vm %s: the saved XML is of UUID %s, not of this VM; nothing was changed."
                                           % (target, info["uuid"])) from None
                elif target != info["name"]:
                    raise RestoreError("vm %r does not exist and the saved XML names %r; nothing was changed."
                                       % (target, info["name"])) from None
        if dom is None:
            try:
                dom = lv.lookup_domain(conn, info["uuid"], kind="uuid")
            except lv.DomainNotFound:
                dom = None
        if dom is not None:
            validate_domain_xml(xml, allowed, expected_uuid=dom.UUIDString(), expected_name=dom.name(), host=host)
        else:
            try:
                other = lv.lookup_domain(conn, info["name"], kind="name")
            except lv.DomainNotFound:
                other = None
            if other is not None:
                raise RestoreError("a different VM named %r (UUID %s) exists on %s; the saved XML is of UUID %s. "
                                   "Nothing was changed." % (info["name"], other.UUIDString(), uri, info["uuid"]))
        # no disk (or NVRAM) of another VM of this host: the restore would roll back that VM's data
        busy = _domain_policy.disk_users(conn, [d["path"] for d in info["disks"]] + [info["nvram"] or ""],
                                         info["uuid"])
        if busy:
            raise RestoreError("refusing the saved domain XML of %s: %s. Nothing was changed." % (info["name"], "; ".join(
                "%s is used by VM %s on %s" % (path, ", ".join(names), uri) for path, names in sorted(busy.items()))))
        xml = info["xml"]
        result["rewritten"] = info["rewritten"]
        result["vm"] = {"name": info["name"], "uuid": info["uuid"]}
        result["xml_sha256"] = info["sha256"]
        result["existed"] = dom is not None
        prior = _state(dom) if dom is not None else "absent"
        result["prior_state"] = prior
        if params.get("nvram"):
            if not info["nvram"]:
                raise RestoreError("nvram: given, but the saved XML has no <os><nvram> path to restore it to; "
                                   "nothing was changed.")
            if not os.path.isfile(params["nvram"]):
                raise RestoreError("nvram: %s does not exist or is not a file; nothing was changed." % params["nvram"])
        running = prior in ("running", "paused", "blocked", "pmsuspended")
        if running and not params.get("force"):
            raise RestoreError("VM %s (%s) on %s is %s; a restore would overwrite a VM in use. Shut it down first, or "
                               "set force: true to shut it down (graceful, up to shutdown_timeout s, then destroy). "
                               "Nothing was changed." % (info["name"], info["uuid"], uri, prior), result)
        start_opt = params.get("start") or "auto"
        will_start = start_opt == "always" or (start_opt == "auto" and running)
        plan = (["shutdown"] if running else []) + ["define"] + (["nvram"] if params.get("nvram") else []) + \
            (["start"] if will_start else [])
        if params.get("define") is False:
            plan = ["shutdown"] if running else []
        if check_mode:
            result["actions"] = plan
            result["changed"] = True
            result["state"] = prior
            result["msg"] = "check mode: would %s VM %s; nothing changed" % (", ".join(plan), info["name"])
            return result
        # ---- from here on, things change (under the VM's fence lock: no backup runs on it meanwhile) -------
        locked = _lock_vm(params, info, result)
        try:
            if params.get("aside_dir") and dom is not None:
                save_aside(dom, params["aside_dir"], info["uuid"], result)
            if params.get("define") is False:
                return _stop_only(dom, info, params, running, result)
            return _apply(conn, dom, xml, info, params, running, will_start, result)
        except RestoreError:
            raise
        except Exception as err:
            if lv.libvirt is not None and isinstance(err, lv.libvirt.libvirtError):
                raise RestoreError("vm_restore of %s on %s failed after %s: %s" % (
                    info["name"], uri, ", ".join(result["actions"]) or "no change", err), result) from None
            raise
        finally:
            if locked:
                _lock.release(params["state_dir"], [info["uuid"]], locked)
    finally:
        try:
            conn.close()
        except Exception:
            pass


def _lock_vm(params: Dict[str, Any], info: Dict[str, Any], result: Dict[str, Any]) -> Optional[str]:
    """Take the VM's fence lock (the one vm_quiesce/vm_backup use); returns the run id, None without state_dir.

    With ``run_id`` the run already holds the lock (vm_quiesce state=locked in its pre-flight, released by the
    run): check that it still does and take nothing (returns None: the run releases it)."""
    if not params.get("state_dir"):
        return None
    if params.get("run_id"):
        path = _lock.lock_path(params["state_dir"], info["uuid"])
        rec = _lock.read_lock(path)
        if not rec or rec.get("run_id") != params["run_id"]:
            holder = "held by %s" % _lock.describe(rec) if rec else "no lock"
            raise RestoreError("VM %s (%s): run %s no longer holds its lock %s (%s); nothing was changed. Rerun the "
                               "restore." % (info["name"], info["uuid"], params["run_id"], path, holder),
                               dict(result, holder=rec or {}))
        return None
    try:
        _journal.ensure_state_dir(params["state_dir"])
    except _journal.JournalError as err:
        raise RestoreError(str(err) + " Nothing was changed.", result) from None
    run_id = _journal.new_run_id("restore")
    budget = int(params.get("shutdown_timeout", 120)) + int(params.get("verify_timeout", 120)) + 120
    try:
        _taken, takeovers = _lock.acquire(params["state_dir"], [{"uuid": info["uuid"], "name": info["name"]}],
                                          run_id, time.time() + budget)
    except _lock.LockBusy as err:
        raise RestoreError("%s Nothing was changed." % err, dict(result, holder=err.holder)) from None
    if takeovers:
        result["lock_takeovers"] = takeovers
    return run_id


def save_aside(dom: Any, aside_dir: str, vm_uuid: str, result: Dict[str, Any]) -> None:
    """Copy the VM's current domain XML and NVRAM (they live outside ONTAP) to ASIDE_DIR (0700; files 0600).

    A copy already there is kept: a rerun of an interrupted restore must not replace the state before the
    first attempt with a half-restored one."""
    os.makedirs(aside_dir, mode=0o700, exist_ok=True)
    os.chmod(aside_dir, 0o700)
    xml_path = os.path.join(aside_dir, "%s.xml" % vm_uuid)
    text = dom.XMLDesc(1 | 2)  # VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE: the definition as it stands
    if not os.path.exists(xml_path):
        write_file_atomic(xml_path, text.encode("utf-8"))
    aside = {"dir": aside_dir, "xml": xml_path, "nvram": None}
    nvram = _domain_xml.parse_domain_xml(text)["nvram"]
    if nvram and os.path.isfile(nvram):
        nv_path = os.path.join(aside_dir, "%s.nvram" % vm_uuid)
        if not os.path.exists(nv_path):
            fd = os.open(nvram, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                write_file_atomic(nv_path, fh.read())
        aside["nvram"] = nv_path
    result["aside"] = aside
    result["actions"].append("aside")


def _stop_only(dom: Any, info: Dict[str, Any], params: Dict[str, Any], running: bool,
               result: Dict[str, Any]) -> Dict[str, Any]:
    """define=false: stop the VM (the restore's first step), define nothing."""
    if running:
        _stop(dom, int(params.get("shutdown_timeout", 120)), result)
        result["changed"] = True
    result["agent"] = "not started"
    result["state"] = _state(dom) if dom is not None else "absent"
    done = ", ".join(result["actions"]) or "nothing to do"
    result["msg"] = "VM %s stopped (%s); state %s" % (info["name"], done, result["state"])
    return result


def _apply(conn: Any, dom: Any, xml: str, info: Dict[str, Any], params: Dict[str, Any], running: bool,
           will_start: bool, result: Dict[str, Any]) -> Dict[str, Any]:
    if running:
        _stop(dom, int(params.get("shutdown_timeout", 120)), result)
    dom = conn.defineXML(xml)
    result["actions"].append("define")
    result["changed"] = True
    if params.get("nvram"):
        copy_nvram(params["nvram"], info["nvram"])
        result["actions"].append("nvram")
    if will_start:
        dom.create()
        result["actions"].append("start")
        _verify(dom, info, int(params.get("verify_timeout", 120)), result)
    else:
        result["agent"] = "not started"
    result["state"] = _state(dom)
    result["msg"] = "VM %s restored (%s); state %s, agent %s" % (info["name"], ", ".join(result["actions"]),
                                                                 result["state"], result["agent"])
    return result


def _stop(dom: Any, timeout: int, result: Dict[str, Any]) -> None:
    """Graceful shutdown (ACPI/agent), wait up to TIMEOUT; then destroy (only reached with force).

    Records result["shutdown"] = {how: graceful | forced (destroyed after TIMEOUT) | destroyed (it was paused),
    seconds, timeout}."""
    started = time.monotonic()

    def done(how: str) -> None:
        result["shutdown"] = {"how": how, "seconds": round(time.monotonic() - started, 1), "timeout": timeout}

    if dom.state()[0] == VIR_DOMAIN_PAUSED:
        dom.destroy()  # a paused guest cannot shut down by itself
        result["actions"].append("destroy")
        done("destroyed")
        return
    try:
        dom.shutdown()
        result["actions"].append("shutdown")
    except Exception:
        pass
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not dom.isActive():
            done("graceful")
            return
        time.sleep(0.25)
    if dom.isActive():
        dom.destroy()
        result["actions"].append("destroy")
        done("forced")
    else:
        done("graceful")


def _verify(dom: Any, info: Dict[str, Any], timeout: int, result: Dict[str, Any]) -> None:
    end = time.monotonic() + timeout
    while _state(dom) != "running" and time.monotonic() < end:
        time.sleep(0.2)
    if _state(dom) != "running":
        result["state"] = _state(dom)
        raise RestoreError("VM %s was started but is %s after %ds." % (info["name"], result["state"], timeout), result)
    if not info["agent_channel"]:
        result["agent"] = "absent"
        return
    while time.monotonic() < end:
        if agent_ping(dom, 2):
            result["agent"] = "ok"
            return
        time.sleep(0.5)
    result["agent"] = "unresponsive"
    result["state"] = _state(dom)
    raise RestoreError("VM %s runs, but its guest agent did not answer guest-ping within %ds; check the guest "
                       "(console, qemu-guest-agent service)." % (info["name"], timeout), result)
