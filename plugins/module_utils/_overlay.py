# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One VM's overlay: inspect, quiesce → external disk-only overlays of all its disks at once → release, and
later the active commit + pivot of each overlay and the removal of its file (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

Every libvirt call goes through the fence's SharedConnection (``sc.call``: reconnect and retry after a
transient error). Quiesce and release are the direct fence's own (``_fence_vm.quiesce_one``/``release_one``):
the only code that suspends, freezes, resumes or thaws a VM. Nothing here raises for a VM's failure: the
outcome says what happened, with the time of each step in ms.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_root, used_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import VIR_DOMAIN_PAUSED, SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_rules import elapsed_ms, wall_time
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_vm import quiesce_one, release_one
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import (
    eligibility,
    is_overlay_path,
    overlay_plan,
    snapshot_xml,
    vm_facts,
)

# libvirt flags (libvirt-python's constants; numbers so this imports where libvirt-python is missing)
SNAPSHOT_DISK_ONLY = 16  # VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
SNAPSHOT_NO_METADATA = 4  # VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
SNAPSHOT_ATOMIC = 128  # VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
SNAPSHOT_REUSE_EXT = 32  # VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT: the overlay files exist (precreate)
COMMIT_SHALLOW = 1  # VIR_DOMAIN_BLOCK_COMMIT_SHALLOW: into the overlay's immediate backing image only
COMMIT_ACTIVE = 4  # VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
JOB_ABORT_PIVOT = 2  # VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT
XML_INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE
COMMIT_TIMEOUT = 300.0  # seconds one commit may take before it is aborted (the VM stays on its overlay)
COMMIT_ATTEMPTS = 3
COMMIT_POLL = 0.01


def _dom(sc: SharedConnection, conn: Any, vm_uuid: str) -> Any:
    return sc.domain(conn, vm_uuid)


def block_jobs(dom: Any, targets: List[str]) -> Dict[str, int]:
    """{target: job type} of the block jobs running on TARGETS."""
    jobs: Dict[str, int] = {}
    for target in targets:
        try:
            info = dom.blockJobInfo(target, 0)
        except Exception as err:
            if _libvirt.is_transient(err):
                raise
            continue  # a disk libvirt cannot ask (cdrom without medium): no job
        if info and "type" in info:
            jobs[target] = int(info["type"])
    return jobs


def inspect(sc: SharedConnection, vm_uuid: str) -> Dict[str, Any]:
    """What the overlay rules need of one VM, read live: {uuid, name, state, persistent, facts, jobs, decision}."""
    def read(conn: Any, _attempt: int) -> Dict[str, Any]:
        dom = _dom(sc, conn, vm_uuid)
        facts = vm_facts(parse_root(dom.XMLDesc(0)))
        state = _libvirt.state_name(dom.state()[0])
        targets = [d["target"] for d in facts["disks"] if d.get("target")]
        jobs = block_jobs(dom, targets) if state in ("running", "paused") else {}
        return {"uuid": vm_uuid, "name": dom.name(), "state": state, "persistent": bool(dom.isPersistent()),
                "facts": facts, "jobs": jobs}
    out = sc.call(read)
    out["decision"] = eligibility(out["facts"], out["state"], out["persistent"], out["jobs"])
    return out


def plan(info: Dict[str, Any], run_id: str) -> Dict[str, Any]:
    """The overlay plan of an inspected VM: {uuid, name, fence, reason, overlays, skipped}."""
    decision = info["decision"]
    out = {"uuid": info["uuid"], "name": info["name"], "prior_state": info["state"], "fence": decision["fence"],
           "reason": decision["reason"], "overlays": [], "skipped": []}
    if decision["fence"] == "overlay":
        out["overlays"] = overlay_plan(info["uuid"], run_id, decision)
        out["skipped"] = [d["target"] for d in decision["disks"] if d["action"] == "skip" and d["target"]]
    return out


def disk_sources(dom: Any, flags: int = 0) -> Dict[str, Optional[str]]:
    """{target: source path} of a domain's disks (live XML, or the persistent one with XML_INACTIVE)."""
    facts = vm_facts(parse_root(dom.XMLDesc(flags)))
    return {d["target"]: d.get("path") for d in facts["disks"] if d.get("target")}


# ---------------------------------------------------------------------------------------------
# quiesce → overlay → release


def precreate(sc: SharedConnection, vm_uuid: str, overlays: List[Dict[str, Any]]) -> None:
    """Create the overlay files before the quiesce (``qemu-img create``, backing = the disk's image, size = its
    capacity from libvirt), so the snapshot call only opens them (REUSE_EXT). An existing file is never reused:
    OSError. Files made here are removed again when a later one fails."""
    qemu_img = shutil.which("qemu-img") or "/usr/bin/qemu-img"
    made: List[str] = []

    def capacity_of(target: str) -> int:
        return int(sc.call(lambda conn, _a: _dom(sc, conn, vm_uuid).blockInfo(target, 0)[0]))
    try:
        for ovl in overlays:
            capacity = capacity_of(ovl["target"])
            fd = os.open(ovl["overlay"], os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            os.close(fd)
            made.append(ovl["overlay"])
            # -u: the image is in use by the running VM; its size comes from libvirt, so qemu-img need not open it
            proc = subprocess.run([qemu_img, "create", "-q", "-u", "-f", "qcow2", "-F", ovl["format"], "-b",
                                   ovl["base"], ovl["overlay"], str(int(capacity))], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise OSError("qemu-img create %s failed: %s" % (ovl["overlay"], proc.stderr.strip()))
    except Exception:
        for path in made:
            try:
                os.unlink(path)
            except OSError:
                pass
        raise


def overlay_vm(sc: SharedConnection, vm_plan: Dict[str, Any], run_id: str, mode: str = "suspend",
               agent_timeout: int = 10, precreated: bool = False) -> Dict[str, Any]:
    """Quiesce one running VM, create the overlays of all its planned disks in one atomic snapshot, release it.

    PRECREATED: the overlay files were made by ``precreate`` (the snapshot reuses them: REUSE_EXT).

    Returns {uuid, name, action, consistency, created, overlay_at, error, detail, release_result, release_error,
    quiesce_ms, overlay_ms, release_ms, pause_ms}; ``overlay_at`` (epoch) is when the snapshot call returned: the
    base images hold the VM's disks as of then until the commit starts. ``pause_ms`` runs from the call that stops the guest (freeze or suspend) to the end of
    the release (an upper bound of the guest's pause). Never raises. ``created`` is False when the snapshot
    failed (libvirt's atomic snapshot then left every disk on its image).
    """
    out: Dict[str, Any] = {"uuid": vm_plan["uuid"], "name": vm_plan.get("name"), "action": "none",
                           "consistency": None, "created": False, "error": None, "detail": None,
                           "release_result": None, "release_error": None, "quiesce_ms": 0.0, "overlay_ms": 0.0,
                           "release_ms": 0.0, "pause_ms": 0.0}
    overlays = vm_plan.get("overlays") or []
    if not overlays:
        out["detail"] = "no disk to overlay; not paused"
        return out
    vm = {"uuid": vm_plan["uuid"], "name": vm_plan.get("name")}
    xml = snapshot_xml(run_id, overlays, vm_plan.get("skipped") or [])
    flags = SNAPSHOT_DISK_ONLY | SNAPSHOT_NO_METADATA | SNAPSHOT_ATOMIC | (SNAPSHOT_REUSE_EXT if precreated else 0)

    def snapshot(conn: Any, attempt: int) -> None:
        dom = _dom(sc, conn, vm_plan["uuid"])
        if attempt and all(disk_sources(dom).get(o["target"]) == o["overlay"] for o in overlays):
            return  # the first attempt went through before the connection dropped
        dom.snapshotCreateXML(xml, flags)

    def _resume_if_paused(conn: Any, _attempt: int) -> None:
        dom = _dom(sc, conn, vm_plan["uuid"])
        if dom.state()[0] == VIR_DOMAIN_PAUSED:
            dom.resume()

    resume_failed: List[bool] = []

    def held_switch(conn: Any, attempt: int) -> None:
        # a frozen guest's vCPUs still run and (under TCG) compete with QEMU's switch for the CPU: they are
        # suspended for the switch alone, which then takes about half as long; the guest is frozen anyway
        dom = _dom(sc, conn, vm_plan["uuid"])
        paused = False
        try:
            dom.suspend()
            paused = True
        except Exception:  # e.g. already paused meanwhile: the switch is done as it is
            pass
        try:
            snapshot(conn, attempt)
        finally:
            if paused:
                try:
                    dom.resume()
                except Exception:
                    resume_failed.append(True)  # retried below, on a fresh connection if need be
                    raise

    t_call = time.monotonic()
    quiesced = quiesce_one(sc, vm, mode, agent_timeout)
    t0 = quiesced.get("t_start") or t_call  # the guest stops here (not at the agent's status check before)
    out.update(action=quiesced["action"], consistency=quiesced["consistency"], detail=quiesced.get("detail"),
               frozen_filesystems=quiesced.get("frozen_filesystems"))
    t1 = quiesced["t_done"]
    out["quiesce_ms"] = elapsed_ms(t0, t1)
    if quiesced.get("error"):
        out["error"] = quiesced["error"]
    elif quiesced.get("user_frozen"):
        out["error"] = ("VM %s (%s): its filesystems were frozen before this run; the overlay fence leaves it to "
                        "the direct fence" % (vm["name"], vm["uuid"]))
    else:
        try:
            sc.call(held_switch if out["action"] == "frozen" else snapshot)
            out["created"] = True
        except Exception as err:
            out["error"] = ("overlay of VM %s (%s) failed: %s; libvirt's atomic snapshot left every disk on its "
                            "image, the VM is released" % (vm["name"], vm["uuid"], err))
        if resume_failed:  # the switch's own resume failed (connection lost): never left paused
            try:
                sc.call(_resume_if_paused)
            except Exception as err:
                out["release_error"] = "resume of VM %s (%s) after its overlay switch failed: %s" % (
                    vm["name"], vm["uuid"], err)
    t2 = time.monotonic()
    out["overlay_ms"] = elapsed_ms(t1, t2)
    if out["created"]:  # the overlay point (epoch): from here the base images do not change until the commit
        out["overlay_at"] = wall_time(t2)
    released: Dict[str, Any] = {"result": "untouched", "error": None, "t_done": t2}
    if out["action"] != "none":
        released = release_one(sc, dict(vm, action=out["action"]), agent_timeout)
    out["release_result"] = released.get("result")
    out["release_error"] = released.get("error") or out.get("release_error")
    out["release_ms"] = elapsed_ms(t2, released["t_done"])
    out["pause_ms"] = elapsed_ms(t0, released["t_done"]) if out["action"] != "none" else 0.0
    if precreated and not out["created"]:  # the files made for it are ours and unused: not left behind
        for ovl in overlays:
            removal = remove_overlay_file(sc, vm["uuid"], ovl["overlay"])
            if removal["error"]:
                out["detail"] = "; ".join(x for x in (out["detail"], removal["error"]) if x)
    return out


# ---------------------------------------------------------------------------------------------
# commit → pivot → delete


class CommitError(Exception):
    """One commit of one overlay failed (the VM still runs on its overlay)."""


def _wait_and_pivot(sc: SharedConnection, vm_uuid: str, target: str, timeout: float) -> None:
    """Wait until the active commit of TARGET is ready, then pivot (synchronous); abort it after TIMEOUT."""
    end = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < end:
        info = sc.call(lambda conn, _a: _dom(sc, conn, vm_uuid).blockJobInfo(target, 0))
        if not info:
            raise CommitError("the commit job of disk %s ended before its pivot%s" % (target, _since(last)))
        if int(info.get("end", 0)) and int(info.get("cur", -1)) == int(info["end"]):
            try:
                sc.call(lambda conn, _a: _dom(sc, conn, vm_uuid).blockJobAbort(target, JOB_ABORT_PIVOT))
                return
            except Exception as err:  # not ready yet (the job is still converging): poll on
                if _libvirt.is_transient(err):
                    raise
                last = err
        time.sleep(COMMIT_POLL)
    try:  # give up this attempt: cancel the job, the VM stays on its overlay (its data is intact there)
        sc.call(lambda conn, _a: _dom(sc, conn, vm_uuid).blockJobAbort(target, 0))
    except Exception:
        pass
    raise CommitError("the commit of disk %s was not ready for its pivot within %.0fs%s; the job was cancelled, "
                      "the VM still runs on its overlay" % (target, timeout, _since(last)))


def _since(err: Optional[BaseException]) -> str:
    return " (last answer: %s)" % err if err is not None else ""


def commit_disk(sc: SharedConnection, vm_uuid: str, ovl: Dict[str, Any], timeout: float = COMMIT_TIMEOUT
                ) -> Dict[str, Any]:
    """Commit one overlay back into its image and pivot, then delete the overlay file.

    OVL: {target, overlay, base}. Returns {target, result, started_at, commit_ms, removed, error}; ``started_at``
    (epoch) is when this attempt began, the end of the base's stable window; ``result`` is
    ``committed`` (done now), ``not on overlay`` (the disk was not on it: nothing to commit) or None (failed:
    ``error``); ``removed``/``remove_error`` say whether the file is gone. Never raises for a libvirt failure.
    """
    target, overlay = ovl["target"], ovl["overlay"]
    out: Dict[str, Any] = {"target": target, "overlay": overlay, "result": None, "commit_ms": 0.0,
                           "removed": False, "remove_error": None, "error": None, "started_at": time.time()}

    def start_commit(conn: Any, attempt: int) -> None:
        dom = _dom(sc, conn, vm_uuid)
        if attempt and dom.blockJobInfo(target, 0):
            return  # the first attempt started it before the connection dropped
        dom.blockCommit(target, None, None, 0, COMMIT_ACTIVE | COMMIT_SHALLOW)

    t0 = time.monotonic()
    try:
        source = sc.call(lambda conn, _a: disk_sources(_dom(sc, conn, vm_uuid)).get(target))
        if source == overlay:
            sc.call(start_commit)
            _wait_and_pivot(sc, vm_uuid, target, timeout)
            source = sc.call(lambda conn, _a: disk_sources(_dom(sc, conn, vm_uuid)).get(target))
            if source == overlay:
                raise CommitError("the pivot of disk %s returned but the disk still runs on %s" % (target, overlay))
            out["result"] = "committed"
        else:
            out["result"] = "not on overlay"
        out["commit_ms"] = elapsed_ms(t0, time.monotonic())
        removal = remove_overlay_file(sc, vm_uuid, overlay)
        out["removed"], out["remove_error"] = removal["removed"], removal["error"]
    except Exception as err:
        out["commit_ms"] = elapsed_ms(t0, time.monotonic())
        out["error"] = "commit of overlay %s (disk %s) failed: %s" % (overlay, target, err)
    return out


def remove_overlay_file(sc: SharedConnection, vm_uuid: str, overlay: str) -> Dict[str, Any]:
    """Delete OVERLAY unless the VM's live or persistent definition still names it: {removed, error}."""
    if not is_overlay_path(overlay):
        return {"removed": False, "error": "%s is not a kvmsnap overlay file name; not deleted" % overlay}

    def users(conn: Any, _attempt: int) -> List[str]:
        dom = _dom(sc, conn, vm_uuid)
        names = []
        for flags in (0, XML_INACTIVE):
            if flags == XML_INACTIVE and not dom.isPersistent():
                continue
            names.extend(_names_in(dom.XMLDesc(flags)))
        return names
    try:
        if overlay in sc.call(users):
            return {"removed": False, "error": "the VM's definition still names %s; not deleted" % overlay}
    except Exception as err:
        if _libvirt.error_code(err) != _libvirt.VIR_ERR_NO_DOMAIN:
            return {"removed": False, "error": "cannot check who uses %s: %s; not deleted" % (overlay, err)}
    try:
        os.unlink(overlay)
    except FileNotFoundError:
        return {"removed": True, "error": None}
    except OSError as err:
        return {"removed": False, "error": "cannot delete %s: %s" % (overlay, err.strerror)}
    return {"removed": True, "error": None}


def _names_in(xml_text: str) -> List[str]:
    return sorted(used_paths(parse_root(xml_text)))


def commit_vm(sc: SharedConnection, vm_uuid: str, overlays: List[Dict[str, Any]], timeout: float = COMMIT_TIMEOUT,
              attempts: int = COMMIT_ATTEMPTS, on_attempt: Any = None) -> List[Dict[str, Any]]:
    """Commit every overlay of one VM, one disk after the other (libvirt runs one job per disk; the VM's
    disks share its I/O). A failed commit is tried ATTEMPTS times; each result carries ``attempts``.
    ON_ATTEMPT(result) is called after every attempt (the caller journals it)."""
    results = []
    for ovl in overlays:
        res: Dict[str, Any] = {}
        for attempt in range(1, max(1, attempts) + 1):
            res = commit_disk(sc, vm_uuid, ovl, timeout)
            res["attempts"] = attempt
            if on_attempt is not None:
                on_attempt(res)
            if not res["error"]:
                break
        results.append(res)
    return results
