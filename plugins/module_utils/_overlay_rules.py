# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure rules of the overlay fence: which VMs and disks can take an overlay, the overlay files' names, the
snapshot XML. No I/O (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

A VM takes the overlay fence only when every disk that can change is overlaid at the same instant; one disk
that cannot sends the whole VM to the ``direct`` fence, with the reason. Per disk the decision is one of

* ``overlay``: a writable file disk (raw or qcow2, also with a backing chain) gets an external qcow2 overlay;
* ``skip``: the disk cannot change (read-only, cdrom, a drive without medium): no overlay, nothing to freeze;
* ``refuse``: the disk cannot be overlaid safely (block/LUN, network, shareable, encrypted, cache=unsafe,
  a format other than raw/qcow2, already on a kvmsnap overlay): the VM goes to ``direct``.

Overlay files lie beside their disk: ``<disk dir>/.kvmsnap-overlay.<vm uuid>.<target>.<run id>.qcow2``
(``overlay_path``, recognised by ``parse_overlay_name``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional
from xml.sax.saxutils import quoteattr

from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import domain_record

FENCE_OVERLAY = "overlay"
FENCE_DIRECT = "direct"
OVERLAY_FORMATS = ("raw", "qcow2")
OVERLAY_PREFIX = ".kvmsnap-overlay."
OVERLAY_SUFFIX = ".qcow2"
# libvirt's block job types (virDomainBlockJobType), for the messages
BLOCK_JOB_TYPES = {0: "unknown", 1: "pull", 2: "copy", 3: "commit", 4: "active commit", 5: "backup"}
_RUN_TOKEN_RE = re.compile(r"[^A-Za-z0-9_.-]")
_NAME_RE = re.compile(r"^%s(?P<uuid>[0-9a-fA-F-]{36})\.(?P<target>[A-Za-z0-9_-]{1,32})\.(?P<run>[A-Za-z0-9_.-]{1,128})%s$"
                      % (re.escape(OVERLAY_PREFIX), re.escape(OVERLAY_SUFFIX)))


# ---------------------------------------------------------------------------------------------
# names


def run_token(run_id: str) -> str:
    """RUN_ID as it appears in an overlay file name (characters other than [A-Za-z0-9_.-] become '_')."""
    return _RUN_TOKEN_RE.sub("_", run_id)[:128]


def overlay_path(disk_path: str, vm_uuid: str, target: str, run_id: str) -> str:
    """The overlay file of one disk for one run: beside the disk, hidden, named by VM uuid, target and run."""
    name = "%s%s.%s.%s%s" % (OVERLAY_PREFIX, vm_uuid.lower(), target, run_token(run_id), OVERLAY_SUFFIX)
    return os.path.join(os.path.dirname(os.path.abspath(disk_path)), name)


def parse_overlay_name(path: Optional[str]) -> Optional[Dict[str, str]]:
    """{uuid, target, run} of a kvmsnap overlay file name, or None when PATH is not one."""
    if not path:
        return None
    match = _NAME_RE.match(os.path.basename(path))
    if match is None:
        return None
    return {"uuid": match.group("uuid").lower(), "target": match.group("target"), "run": match.group("run")}


def is_overlay_path(path: Optional[str]) -> bool:
    return parse_overlay_name(path) is not None


# ---------------------------------------------------------------------------------------------
# eligibility


def vm_facts(root: ET.Element) -> Dict[str, Any]:
    """The domain record of _domain_xml plus what the overlay rules need per disk: ``cache`` (driver cache
    mode) and ``encrypted`` (a LUKS/qcow encryption element on the source)."""
    record = domain_record(root)
    elems = root.findall("devices/disk")
    for disk, elem in zip(record["disks"], elems):
        driver = elem.find("driver")
        disk["cache"] = driver.get("cache") if driver is not None else None
        disk["encrypted"] = elem.find("encryption") is not None or elem.find("source/encryption") is not None
    return record


def disk_decision(disk: Dict[str, Any], job: Optional[int] = None) -> Dict[str, Any]:
    """What the overlay fence does with one disk: {target, path, format, action, reason}; JOB is the type of a
    block job running on it (libvirt's number) or None."""
    out = {"target": disk.get("target"), "path": disk.get("path"), "format": disk.get("format"),
           "action": "refuse", "reason": None}
    device = disk.get("device") or "disk"
    dtype = disk.get("type") or "file"
    if device == "cdrom":
        out.update(action="skip", reason="cdrom: read-only medium, nothing changes")
        return out
    if disk.get("path") is None and dtype in ("file", "block"):
        out.update(action="skip", reason="no medium: nothing to overlay")
        return out
    if disk.get("readonly"):
        out.update(action="skip", reason="read-only disk: nothing changes, nothing to overlay")
        return out
    if not out["target"]:
        out["reason"] = "the disk has no target device name; libvirt cannot address it in a snapshot"
    elif job is not None:
        out["reason"] = ("a %s block job is running on it; libvirt allows one job per disk, so the overlay could "
                         "not be committed" % BLOCK_JOB_TYPES.get(job, str(job)))
    elif device == "lun":
        out["reason"] = "a SCSI pass-through LUN (device lun): the guest talks to the device itself"
    elif device == "floppy":
        out["reason"] = "a writable floppy: libvirt takes no external snapshot of it"
    elif dtype == "block":
        out["reason"] = ("a block device (LUN): it has no datastore directory for an overlay, and an overlay in a "
                         "local directory would block the VM's migration")
    elif dtype != "file":
        out["reason"] = "a %s disk: only file disks get an overlay" % dtype
    elif disk.get("shareable"):
        out["reason"] = ("shareable: other VMs write the same image, they would not see this VM's writes to its "
                         "overlay")
    elif disk.get("encrypted"):
        out["reason"] = "encrypted: the overlay would hold the guest's writes unencrypted"
    elif disk.get("cache") == "unsafe":
        out["reason"] = "cache=unsafe: QEMU ignores flushes, so the image is not on stable storage at the overlay"
    elif disk.get("format") not in OVERLAY_FORMATS:
        out["reason"] = "format %s: only raw and qcow2 images get an overlay" % (disk.get("format") or "unknown")
    elif is_overlay_path(disk.get("path")):
        info = parse_overlay_name(disk.get("path")) or {}
        out["reason"] = ("it already runs on a kvmsnap overlay of run %s; recover it first (the overlay is "
                         "committed by the recovery)" % info.get("run"))
    elif any(is_overlay_path(b.get("path")) for b in disk.get("backing_chain") or []):
        out["reason"] = "a kvmsnap overlay is in its backing chain; recover it first"
    else:
        out["action"] = "overlay"
        out["reason"] = "backing chain of %d image(s): overlaid on top" % len(disk["backing_chain"]) \
            if disk.get("backing_chain") else None
    return out


def eligibility(facts: Dict[str, Any], state: str, persistent: bool,
                jobs: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """Which fence one VM can take: {fence, reason, disks: [disk_decision]}.

    FACTS: vm_facts of its live XML; STATE: libvirt state name; PERSISTENT: the domain has a persistent
    definition; JOBS: {target: block job type} of the block jobs running on its disks.

    ``reason``: for ``direct`` why (each refused disk named, with its path); for ``overlay`` the disks that are not
    a plain overlay (a skipped read-only disk, an overlay on top of a backing chain; cdroms and empty drives are not
    named), None when there is none.
    """
    jobs = jobs or {}
    disks = [disk_decision(d, jobs.get(d.get("target") or "")) for d in facts.get("disks", [])]
    out: Dict[str, Any] = {"fence": FENCE_DIRECT, "reason": None, "disks": disks}
    if state == "shutoff":
        out["reason"] = "shut off: nothing to quiesce (offline)"
    elif state == "paused":
        out["reason"] = "paused before this run: left untouched, as the direct fence does"
    elif state != "running":
        out["reason"] = "in state %s: not quiesced" % state
    elif not persistent:
        out["reason"] = ("transient: its definition goes with its shutdown, and a leftover overlay would neither "
                         "be found nor committed")
    else:
        refused = [d for d in disks if d["action"] == "refuse"]
        if refused:
            out["reason"] = "; ".join(_disk_note(d) for d in refused)
        else:
            # the report says what was not a plain overlay: skipped disks, overlays on top of a backing chain
            # (not cdroms and empty drives: they never change, and most VMs have one)
            out["fence"] = FENCE_OVERLAY
            notes = [_disk_note(d) for d, fact in zip(disks, facts.get("disks", []))
                     if d["reason"] and fact.get("device") != "cdrom" and fact.get("path") is not None]
            if not any(d["action"] == "overlay" for d in disks):
                notes.insert(0, "no writable disk: nothing to overlay, the VM is not paused")
            out["reason"] = "; ".join(notes) or None
    return out


def _disk_note(decision: Dict[str, Any]) -> str:
    where = " (%s)" % decision["path"] if decision.get("path") else ""
    return "disk %s%s: %s" % (decision["target"], where, decision["reason"])


def overlay_plan(vm_uuid: str, run_id: str, decision: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The overlays of one eligible VM: [{target, base, format, overlay, state: planned}]."""
    return [{"target": d["target"], "base": d["path"], "format": d["format"],
             "overlay": overlay_path(d["path"], vm_uuid, d["target"], run_id), "state": "planned"}
            for d in decision["disks"] if d["action"] == "overlay"]


def snapshot_xml(run_id: str, overlays: List[Dict[str, Any]], skipped: List[str]) -> str:
    """The domainsnapshot XML: an external qcow2 overlay per planned disk, snapshot='no' for skipped targets."""
    parts = ["<domainsnapshot><name>%s</name><description>kvmsnap overlay fence</description><disks>"
             % ("kvmsnap-" + run_token(run_id))]
    for ovl in overlays:
        parts.append("<disk name=%s snapshot='external' type='file'><driver type='qcow2'/><source file=%s/></disk>"
                     % (quoteattr(ovl["target"]), quoteattr(ovl["overlay"])))
    for target in skipped:
        parts.append("<disk name=%s snapshot='no'/>" % quoteattr(target))
    parts.append("</disks></domainsnapshot>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# leftovers


def overlays_in_domain(facts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The disks of a domain (vm_facts) that run on a kvmsnap overlay: [{target, overlay, base, format, uuid, run}].

    ``base`` is the overlay's immediate backing image (what a commit writes into), None when the XML does not
    show it (an inactive definition may not)."""
    out = []
    for disk in facts.get("disks", []):
        info = parse_overlay_name(disk.get("path"))
        if info is None:
            continue
        chain = disk.get("backing_chain") or []
        out.append({"target": disk.get("target"), "overlay": disk["path"],
                    "base": chain[0].get("path") if chain else None,
                    "format": chain[0].get("format") if chain else None, "uuid": info["uuid"], "run": info["run"]})
    return out
