# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the run report of the discover/backup/restore roles: a JSON document, AWX stats, a human summary.

This module util is PRIVATE to the collection. It may change without notice.

Inputs are plain lists the roles collect; the builder normalises them, decides the run status and names
what was and was not protected. The status is:

- ``ok``: every VM in scope is protected (backup) / restored (restore) and every volume snapshot exists;
- ``warning``: as ``ok`` but a SnapMirror/SnapVault update failed or pruning skipped a snapshot;
- ``failed``: at least one VM or volume was not protected/restored (a partial failure is a failure).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

REPORT_VERSION = 1


def _vm_entry(vm: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "host": vm.get("host"),
        "name": vm.get("name"),
        "uuid": vm.get("uuid"),
        "ok": bool(vm.get("ok", False)),
        "consistency": vm.get("consistency"),
        "pause_ms": vm.get("pause_ms"),
        "fence": vm.get("fence"),
        "fence_reason": vm.get("fence_reason"),
        "released": vm.get("released"),
        "state_before": vm.get("state_before"),
        "state_after": vm.get("state_after"),
        "volumes": sorted(set(vm.get("volumes") or [])),
        "error": vm.get("error"),
        "details": vm.get("details") or {},
    }


def _volume_entry(vol: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "controller": vol.get("controller"),
        "svm": vol.get("svm"),
        "volume": vol.get("volume"),
        "snapshot": vol.get("snapshot"),
        "ok": bool(vol.get("ok", False)),
        "method": vol.get("method"),
        "snapmirror": list(vol.get("snapmirror") or []),
        "pruned": list(vol.get("pruned") or []),
        "prune_skipped": list(vol.get("prune_skipped") or []),
        "error": vol.get("error"),
        "files": list(vol.get("files") or []),  # restore: per file/LUN result
    }


def volume_key_prefixes(vols: Sequence[Mapping[str, Any]]) -> tuple:
    return tuple(volume_key(v) + ": " for v in vols)


def volume_key(vol: Mapping[str, Any]) -> str:
    return "%s:%s:%s" % (vol.get("controller"), vol.get("svm"), vol.get("volume"))


def build_report(operation: str, run_id: str, vms: List[Mapping[str, Any]], volumes: List[Mapping[str, Any]],
                 snapshot: Optional[str] = None, started: Optional[str] = None, finished: Optional[str] = None,
                 warnings: Optional[List[str]] = None, errors: Optional[List[str]] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Return the report document (see the module docstring for the status rules)."""
    vm_entries = sorted((_vm_entry(v) for v in vms), key=lambda v: (str(v["host"]), str(v["name"])))
    vol_entries = sorted((_volume_entry(v) for v in volumes), key=volume_key)
    warn = [str(w) for w in (warnings or []) if w]
    errs = [str(e) for e in (errors or []) if e]
    for vol in vol_entries:
        for mirror in vol["snapmirror"]:
            if mirror.get("result") not in ("ok", "skipped", None):
                warn.append("%s: %s update of %s failed: %s" % (
                    volume_key(vol), mirror.get("type", "snapmirror"), mirror.get("destination", "?"),
                    mirror.get("error") or mirror.get("result")))
        for skipped in vol["prune_skipped"]:
            warn.append("%s: pruning skipped %s (%s)" % (volume_key(vol), skipped.get("name"), skipped.get("reason")))
        if not vol["ok"]:
            errs.append("%s: %s" % (volume_key(vol), vol["error"] or "no snapshot"))
    # an explicit error that only repeats a volume's error is said once, on the volume's line
    vol_texts = [vol["error"] for vol in vol_entries if not vol["ok"] and vol["error"]]
    errs = [e for e in errs if not any(e == t or e.endswith(": " + t) for t in vol_texts
                                       if not e.startswith(volume_key_prefixes(vol_entries)))]
    errs += _vm_errors(vm_entries, {vol["error"]: volume_key(vol) for vol in vol_entries
                                    if not vol["ok"] and vol["error"]}, errs)
    for vm in vm_entries:
        if vm["released"] is False:
            errs.append("%s/%s: NOT RELEASED - resume/thaw it now (the watchdog releases it at its deadline)"
                        % (vm["host"], vm["name"]))
    done = [v["name"] for v in vm_entries if v["ok"]]
    not_done = [v["name"] for v in vm_entries if not v["ok"]]
    if errs:
        status = "failed"
    elif warn:
        status = "warning"
    else:
        status = "ok"
    report: Dict[str, Any] = {
        "kvmsnap_report": REPORT_VERSION,
        "operation": operation,
        "run_id": run_id,
        "snapshot": snapshot,
        "status": status,
        "started": started,
        "finished": finished,
        "vms": vm_entries,
        "volumes": vol_entries,
        "done": done,
        "not_done": not_done,
        "warnings": _dedup(warn),
        "errors": _dedup(errs),
    }
    if extra:
        for key, value in extra.items():
            report.setdefault(key, value)
    report["summary"] = summary_lines(report)
    return report


def _vm_errors(vm_entries: List[Dict[str, Any]], vol_errors: Mapping[str, str], earlier: List[str]) -> List[str]:
    """One line per distinct VM error: VMs failing the same way are named together, and an error already said
    for a volume (or earlier in the list) is referred to, not repeated."""
    grouped: Dict[str, List[str]] = {}
    for vm in vm_entries:
        if vm["ok"]:
            continue
        text = str(vm["error"] or "not done")
        for vol_text, key in sorted(vol_errors.items(), key=lambda kv: -len(kv[0])):
            if len(vol_text) > 30 and vol_text in text:
                text = text.replace(vol_text, "see %s" % key)
        for line in earlier:
            head, sep, said = line.partition(": ")
            if sep and len(said) > 30 and said in text and not said.startswith("see "):
                text = text.replace(said, "see %s" % head)
        grouped.setdefault(text, []).append("%s/%s" % (vm["host"], vm["name"]))
    return ["%s: %s" % (", ".join(names), text) for text, names in grouped.items()]


def _dedup(items: List[str]) -> List[str]:
    seen = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def summary_lines(report: Mapping[str, Any]) -> List[str]:
    """A short human summary, one line per VM and per volume, errors last."""
    op = report.get("operation")
    verb = {"backup": "protected", "restore": "restored", "discover": "protectable"}.get(str(op), "done")
    lines = ["kvmsnap %s %s: %s (%d/%d VMs %s)%s" % (
        op, report.get("run_id"), report.get("status", "?").upper(), len(report.get("done", [])),
        len(report.get("vms", [])), verb, (", snapshot %s" % report["snapshot"]) if report.get("snapshot") else "")]
    for vm in report.get("vms", []):
        parts = ["  VM %s on %s: %s" % (vm["name"], vm["host"], "ok" if vm["ok"] else "NOT " + verb)]
        if vm.get("consistency"):
            parts.append("consistency=%s" % vm["consistency"])
        if vm.get("pause_ms") is not None:
            parts.append("pause=%sms" % vm["pause_ms"])
        if vm.get("state_after"):
            parts.append("state=%s" % vm["state_after"])
        if vm.get("released") is not None:
            parts.append("released" if vm["released"] else "NOT RELEASED")
        if vm.get("error") and vm["ok"]:
            parts.append("error: %s" % vm["error"])  # a failed VM's error is said once, in the ERROR lines
        lines.append(", ".join(parts))
    for vol in report.get("volumes", []):
        parts = ["  volume %s: %s" % (volume_key(vol), ("snapshot %s" % vol["snapshot"]) if vol["ok"] else "FAILED")]
        if vol.get("method"):
            parts.append("method=%s" % vol["method"])
        for mirror in vol.get("snapmirror", []):
            parts.append("%s %s=%s" % (mirror.get("type", "snapmirror"), mirror.get("destination", "?"),
                                       mirror.get("result")))
        if vol.get("pruned"):
            parts.append("pruned %s" % ", ".join(str(p) for p in vol["pruned"]))
        if vol.get("error") and vol["ok"]:
            parts.append("error: %s" % vol["error"])
        lines.append(", ".join(parts))
    for stop in report.get("shutdown") or []:
        lines.append("  shut down VM %s on %s before the restore: %s after %ss (timeout %ss)" % (
            stop.get("vm"), stop.get("host"), stop.get("how"), stop.get("seconds"), stop.get("timeout")))
    for warning in report.get("warnings", []):
        lines.append("  WARNING: %s" % warning)
    for note in report.get("notes") or []:
        lines.append("  note: %s" % note)
    for error in report.get("errors", []):
        lines.append("  ERROR: %s" % error)
    return lines


def stats(report: Mapping[str, Any]) -> Dict[str, Any]:
    """The compact form for `set_stats` (AWX job artifacts): no per-disk detail, JSON-safe."""
    return {
        "kvmsnap_%s" % report.get("operation"): {
            "run_id": report.get("run_id"),
            "status": report.get("status"),
            "snapshot": report.get("snapshot"),
            "done": list(report.get("done", [])),
            "not_done": list(report.get("not_done", [])),
            "pause_ms": {"%s/%s" % (v["host"], v["name"]): v.get("pause_ms") for v in report.get("vms", [])
                         if v.get("pause_ms") is not None},
            "consistency": {"%s/%s" % (v["host"], v["name"]): v.get("consistency") for v in report.get("vms", [])
                            if v.get("consistency")},
            "volumes": {volume_key(v): {"snapshot": v.get("snapshot") if v.get("ok") else None,
                                        "pruned": len(v.get("pruned", [])),
                                        "snapmirror": [m.get("result") for m in v.get("snapmirror", [])]}
                        for v in report.get("volumes", [])},
            "errors": list(report.get("errors", [])),
            "warnings": list(report.get("warnings", [])),
        }
    }
