# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Recovery of leftover overlays: VMs still running on a kvmsnap overlay after their run died (or its commit
failed), found in the journals AND in the domains' XML, committed and their files deleted (docs/dev/overlay.md).

This module util is PRIVATE to the collection. It may change without notice.

``find_leftovers(state_dir, sc)`` lists them; ``recover(state_dir, sc)`` commits them. An overlay whose run
still lives (a module process of its journal is alive) is left to that run. A shut-off VM on an overlay is
left as it is (it boots from its overlay, nothing is lost; libvirt can commit only a running disk): the first
recovery that finds it running commits it. A VM that is gone keeps its journal entry pending, reported.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_root
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay import COMMIT_ATTEMPTS, COMMIT_TIMEOUT, commit_vm, remove_overlay_file
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_journal import pending, record_commit
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import overlays_in_domain, run_token, vm_facts

Key = Tuple[str, str, str]  # (vm uuid, target, overlay path)


def _domains(sc: SharedConnection) -> List[Dict[str, Any]]:
    """Every domain of the connection: {uuid, name, state, overlays (overlays_in_domain of its current XML)}."""
    def read(conn: Any, _attempt: int) -> List[Dict[str, Any]]:
        out = []
        for dom in conn.listAllDomains(0):
            try:
                state = _libvirt.state_name(dom.state()[0])
                facts = vm_facts(parse_root(dom.XMLDesc(0)))
            except Exception as err:
                if _libvirt.error_code(err) == _libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined meanwhile
                raise
            out.append({"uuid": dom.UUIDString().lower(), "name": dom.name(), "state": state,
                        "overlays": overlays_in_domain(facts)})
        return out
    return sc.call(read)


def find_leftovers(state_dir: str, sc: SharedConnection, exclude_run: Optional[str] = None,
                   vm_uuids: Optional[List[str]] = None, run: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every overlay not committed: [{uuid, name, state, target, overlay, base, run, journal, found_in, live_run}]
    (of the VMs VM_UUIDS only, when given; of run RUN only, when given; never of run EXCLUDE_RUN).

    ``found_in`` is ``journal``, ``domain`` or both; ``journal`` the journal id recording it (None when only the
    domain XML shows it: a lost state dir); ``live_run`` True when the run that made it still lives;
    ``state`` the VM's libvirt state, or ``absent`` when no domain has its uuid.
    """
    journals = [j for j in _journal.list_journals(state_dir) if "error" not in j]
    by_token: Dict[str, Dict[str, Any]] = {}
    for journal in journals:
        by_token[run_token(str(_journal.run_of(journal)))] = journal
        by_token[run_token(journal["run_id"])] = journal
    domains = {d["uuid"]: d for d in _domains(sc)}
    found: Dict[Key, Dict[str, Any]] = {}
    for journal in journals:
        if exclude_run is not None and _journal.run_of(journal) == exclude_run:
            continue
        for vm, ovl in pending(journal):
            key = (vm["uuid"].lower(), ovl["target"], ovl["overlay"])
            found[key] = {"uuid": key[0], "name": vm.get("name"), "target": ovl["target"], "overlay": ovl["overlay"],
                          "base": ovl.get("base"), "run": _journal.run_of(journal), "journal": journal["run_id"],
                          "journal_state": ovl.get("state"), "found_in": ["journal"], "live_run": _journal.run_owns_overlays(journal)}
    for dom in domains.values():
        for ovl in dom["overlays"]:
            key = (dom["uuid"], ovl["target"], ovl["overlay"])
            entry = found.get(key)
            if entry is None:
                owner: Optional[Dict[str, Any]] = by_token.get(ovl["run"])
                if owner is not None and exclude_run is not None and _journal.run_of(owner) == exclude_run:
                    continue
                entry = found[key] = {"uuid": dom["uuid"], "name": dom["name"], "target": ovl["target"],
                                      "overlay": ovl["overlay"], "base": ovl.get("base"),
                                      "run": _journal.run_of(owner) if owner else ovl["run"],
                                      "journal": owner["run_id"] if owner else None, "journal_state": None,
                                      "found_in": [], "live_run": bool(owner) and _journal.run_owns_overlays(owner or {})}
            entry["found_in"].append("domain")
    for entry in found.values():
        live = domains.get(entry["uuid"])
        entry["state"] = live["state"] if live else "absent"
        entry["name"] = live["name"] if live else entry.get("name")
        entry["found_in"] = "+".join(entry["found_in"])
    wanted = None if vm_uuids is None else {u.lower() for u in vm_uuids}
    return sorted((e for e in found.values() if (wanted is None or e["uuid"] in wanted) and (run is None or e["run"] == run)),
                  key=lambda e: (e["uuid"], e["target"], e["overlay"]))


def recover(state_dir: str, sc: SharedConnection, exclude_run: Optional[str] = None, check_mode: bool = False,
            timeout: float = COMMIT_TIMEOUT, attempts: int = COMMIT_ATTEMPTS,
            vm_uuids: Optional[List[str]] = None, run: Optional[str] = None) -> Dict[str, Any]:
    """Commit every leftover overlay of a running (or paused) VM and delete its file; report each one.

    RUN: only the overlays of that run, committed although the run lives (the caller is that run's own commit:
    vm_quiesce state=released).

    Returns {leftovers: [find_leftovers entry + result, error, attempts, commit_ms, removed], warnings}.
    ``result``: ``committed``, ``not on overlay`` (its disk was not on it: file removed), ``would commit``
    (check mode), ``left to its run`` (the run lives), ``deferred`` (the VM is shut off), ``VM gone``, or
    None when the commit failed (``error``; the journal keeps it pending for the next recovery).
    """
    report: Dict[str, Any] = {"leftovers": [], "warnings": []}
    for entry in find_leftovers(state_dir, sc, exclude_run, vm_uuids, run):
        entry.update(result=None, error=None, attempts=0, commit_ms=0.0, removed=False)
        report["leftovers"].append(entry)
        if entry["live_run"] and run is None:
            entry["result"] = "left to its run"
        elif entry["state"] == "absent":
            entry["result"] = "VM gone"
            entry["error"] = ("VM %s (%s) no longer exists; its overlay %s holds its writes since run %s and was "
                              "kept: commit it by hand (qemu-img commit) or delete it"
                              % (entry["name"], entry["uuid"], entry["overlay"], entry["run"]))
        elif entry["state"] not in ("running", "paused"):
            if "domain" in entry["found_in"]:
                entry["result"] = "deferred"
            elif check_mode:
                entry["result"] = "would remove"
            else:  # its definition does not name the overlay (never made, or committed): only the file is left
                removal = remove_overlay_file(sc, entry["uuid"], entry["overlay"])
                entry.update(result="not on overlay", removed=removal["removed"])
                if removal["error"]:
                    report["warnings"].append(removal["error"])
                _record(state_dir, entry, {"target": entry["target"], "result": "not on overlay",
                                           "removed": removal["removed"], "remove_error": removal["error"]},
                        report["warnings"])
        elif check_mode:
            entry["result"] = "would commit"
        else:
            def journal_it(res: Dict[str, Any], entry: Dict[str, Any] = entry) -> None:
                _record(state_dir, entry, res, report["warnings"])
            res = commit_vm(sc, entry["uuid"], [entry], timeout=timeout, attempts=attempts, on_attempt=journal_it)[0]
            entry.update(result=res["result"], error=res["error"], attempts=res["attempts"],
                         commit_ms=res["commit_ms"], removed=res["removed"])
            if res.get("remove_error"):
                report["warnings"].append(res["remove_error"])
        if entry["error"]:
            report["warnings"].append(entry["error"])
        elif entry["result"] == "deferred":
            report["warnings"].append("VM %s (%s) is shut off on its overlay %s (run %s): it boots from it and loses "
                                      "nothing; the next recovery after it starts commits it"
                                      % (entry["name"], entry["uuid"], entry["overlay"], entry["run"]))
    return report


def _record(state_dir: str, entry: Dict[str, Any], result: Dict[str, Any], warnings: List[str]) -> None:
    if not entry.get("journal") or entry.get("journal_state") is None:
        return  # only the domain XML shows it (no journal holds this overlay)
    try:
        record_commit(state_dir, entry["journal"], entry["uuid"], result)
    except (OSError, _journal.JournalError) as err:
        warnings.append("could not record the commit of %s in journal %s: %s" % (entry["overlay"], entry["journal"], err))
