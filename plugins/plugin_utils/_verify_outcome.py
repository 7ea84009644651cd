# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of kvmsnap.core.verify: what vm_verify gets, what the run proved, which snapshots it marks.

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

OUTPUT_SHOWN = 200  # characters of a check's output in the summary lines (the report carries all vm_verify returned)


def vm_inputs(manifests: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """backup_manifest_info's manifests → vm_verify's vms (name, uuid, xml, nvram_file)."""
    out = []
    for man in manifests or []:
        vm = man.get("vm") or {}
        out.append({"name": vm.get("name"), "uuid": vm.get("uuid"), "xml": man.get("domain_xml_text"),
                    "nvram_file": man.get("nvram_file")})
    return out


def marks(record: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The catalog record's volumes ('ctrl:svm:vol') per controller: [{controller, volumes: ['svm:vol']}]."""
    by_ctrl: Dict[str, List[str]] = {}
    for key in record.get("volumes") or []:
        ctrl, _sep, rest = str(key).partition(":")
        by_ctrl.setdefault(ctrl, []).append(rest)
    return [{"controller": c, "volumes": sorted(v)} for c, v in sorted(by_ctrl.items())]


def _line(host: str, vm: Mapping[str, Any]) -> str:
    if vm.get("verified"):
        check = vm.get("check")
        seconds = vm.get("agent_seconds")
        shown = "-" if seconds is None else seconds
        text = "%s on %s: booted as %s, agent after %ss" % (vm.get("name"), host, vm.get("copy"), shown)
        if check:
            out = (check.get("stdout") or "").strip().replace("\n", " | ")
            text += ", check rc=%s output %r" % (check.get("rc"), out[:OUTPUT_SHOWN])
        return "OK " + text
    return "NOT VERIFIED %s on %s: %s" % (vm.get("name"), host, vm.get("reason") or "unknown")


def outcome(results: Mapping[str, Mapping[str, Any]], manifests: Mapping[str, Mapping[str, Any]],
            snapshot: Mapping[str, Any], failed_hosts: Optional[List[str]] = None) -> Dict[str, Any]:
    """The run's outcome from every host's vm_verify result (RESULTS) and manifest read (MANIFESTS).

    Verified only when at least one VM was checked, every VM booted and passed, no manifest was refused or missing
    and no host failed. {status, verified, vms, not_verified, parallel, cleaned, summary}."""
    vms: List[Dict[str, Any]] = []
    not_verified: List[Dict[str, Any]] = []
    parallel: Dict[str, Any] = {}
    cleaned: Dict[str, Any] = {}
    summary: List[str] = []
    errors: List[str] = ["%s: host failed or unreachable" % h for h in failed_hosts or []]
    for host in sorted(set(results) | set(manifests)):
        res = results.get(host) or {}
        read = manifests.get(host) or {}
        for bad in read.get("invalid") or []:
            not_verified.append({"host": host, "vm": bad.get("uuid"), "reason": "manifest refused: %s"
                                 % bad.get("error")})
        for ident in read.get("missing") or []:
            not_verified.append({"host": host, "vm": ident, "reason": "no manifest in snapshot %s"
                                 % snapshot.get("name")})
        if res.get("failed"):
            errors.append("%s: %s" % (host, res.get("msg") or "vm_verify failed"))
        for vm in res.get("vms") or []:
            vms.append(dict(vm, host=host))
            summary.append(_line(host, vm))
            if not vm.get("verified"):
                not_verified.append({"host": host, "vm": vm.get("name"), "reason": vm.get("reason")})
        if res.get("parallel"):
            parallel[host] = res["parallel"]
        if res.get("cleaned"):
            cleaned[host] = res["cleaned"]
    for item in not_verified:
        if not any(line.startswith("NOT VERIFIED %s on %s" % (item["vm"], item["host"])) for line in summary):
            summary.append("NOT VERIFIED %s on %s: %s" % (item["vm"], item["host"], item["reason"]))
    summary += ["ERROR %s" % e for e in errors]
    verified = bool(vms) and not not_verified and not errors
    if not vms and not not_verified and not errors:
        summary.append("no VM found in the manifests of snapshot %s: nothing verified" % snapshot.get("name"))
    return {"status": "ok" if verified else "failed", "verified": verified, "snapshot": snapshot.get("name"),
            "vms": vms, "not_verified": not_verified, "errors": errors, "parallel": parallel, "cleaned": cleaned,
            "summary": summary}
