# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring check: does every protected VM have a recent good backup?

A VM's newest good backup is the newest snapshot set of the catalog that is a good backup of this collection
(its run confirmed it; not a safety snapshot) and that protected the VM: the set carries the VM's manifest, and
that manifest names this snapshot and its run (see _catalog: the same rule `latest` uses for a restore).

This plugin_util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import protects

DEFAULT_MAX_AGE_HOURS = 26


def _age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return "%dd %dh" % (seconds // 86400, seconds % 86400 // 3600)
    return "%dh %02dm" % (seconds // 3600, seconds % 3600 // 60)


def newest_good(vm: Mapping[str, Any], records: List[Mapping[str, Any]],
                protected: Mapping[str, List[Mapping[str, Any]]]) -> Optional[Mapping[str, Any]]:
    """The newest good snapshot set (records oldest first) that protected VM ({name, uuid}), or None."""
    for rec in reversed(records):
        if not rec.get("ours") or rec.get("state") != "good" or rec.get("policy") == "prerestore":
            continue
        entries = protected.get(rec["name"]) or []
        if protects(rec, entries, vm.get("uuid") or vm["name"]) or protects(rec, entries, vm["name"]):
            return rec
    return None


def check(vms: List[Mapping[str, Any]], records: List[Mapping[str, Any]],
          protected: Mapping[str, List[Mapping[str, Any]]], max_age_hours: float,
          now: Optional[float] = None, failed_hosts: Optional[List[str]] = None) -> Dict[str, Any]:
    """One result per VM ({host, name, uuid, ok, snapshot, policy, created, age_seconds, line}) and the summary.

    VMS: the VMs to check ({host, name, uuid}); RECORDS: the backup catalog (oldest first); PROTECTED: snapshot name →
    the manifests it carries (backup_manifest state=protected, merged over the hosts). A VM fails when it has no good
    backup or its newest one is older than MAX_AGE_HOURS; a KVM host whose discovery failed fails too.
    """
    now = time.time() if now is None else float(now)
    limit = float(max_age_hours) * 3600
    results: List[Dict[str, Any]] = []
    for vm in sorted(vms, key=lambda v: (v.get("host") or "", v["name"])):
        rec = newest_good(vm, records, protected)
        out: Dict[str, Any] = {"host": vm.get("host"), "name": vm["name"], "uuid": vm.get("uuid"), "ok": False,
                               "snapshot": None, "policy": None, "created": None, "age_seconds": None}
        where = "VM %s on %s" % (vm["name"], vm.get("host") or "?")
        if rec is None:
            out["line"] = ("%s: no good backup found on its volumes; run kvmsnap.core.backup for it (and check that "
                           "kvmsnap_vms and the schedule include it)." % where)
        else:
            age = now - float(rec.get("create_time") or 0)
            out.update(snapshot=rec["name"], policy=rec.get("policy"), created=rec.get("create_time_iso"),
                       age_seconds=int(age))
            if age > limit:
                out["line"] = ("%s: newest good backup %s (policy %s, created %s) is %s old, older than "
                               "kvmsnap_check_max_age_hours=%s; check the backup schedule and the last backup runs."
                               % (where, rec["name"], rec.get("policy") or "-", rec.get("create_time_iso") or "?",
                                  _age_text(age), _hours(max_age_hours)))
            else:
                out["ok"] = True
                out["line"] = "%s: newest good backup %s (policy %s, created %s) is %s old." % (
                    where, rec["name"], rec.get("policy") or "-", rec.get("create_time_iso") or "?", _age_text(age))
        results.append(out)
    errors = ["KVM host %s: discovery failed, its VMs were not checked; fix access to it and run the check again."
              % host for host in sorted(failed_hosts or [])]
    failed = [r for r in results if not r["ok"]]
    return {"ok": not failed and not errors, "max_age_hours": max_age_hours,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "vms": results, "failed": [r["line"] for r in failed] + errors,
            "passed": [r["line"] for r in results if r["ok"]],
            "summary": "%d VM(s) checked: %d with a good backup younger than %s h, %d failing%s." % (
                len(results), len(results) - len(failed), _hours(max_age_hours), len(failed),
                ", %d KVM host(s) not checked" % len(errors) if errors else "")}


def _hours(value: float) -> str:
    return ("%g" % float(value))
