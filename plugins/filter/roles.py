# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters the discover/backup/restore/check_backups roles use (controller side). Logic lives in
plugin_utils/module_utils; each filter here only turns Ansible's values into plain Python and calls it.

Ansible has no private filters: each is documented in its sidecar plugins/filter/<name>.yml (the filter's name is
its function's name), as a step of the roles whose interface may change in any release.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._report import build_report, stats
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import existing_set
from ansible_collections.kvmsnap.core.plugins.module_utils._verify import lun_files_wanted as verify_lun_files
from ansible_collections.kvmsnap.core.plugins.plugin_utils import _plan, _remote_copies, _restore_journal, _verify_outcome
from ansible_collections.kvmsnap.core.plugins.plugin_utils._async_loop import foreground
from ansible_collections.kvmsnap.core.plugins.plugin_utils._backup_check import check as check_vms
from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import CatalogError, build_catalog
from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import select as select_from_catalog
from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import (
    apply_verification,
    fence_outcome,
    merge_post,
    normalize,
    restore_outcome,
    restore_plan,
    table,
    volume_restore_conflicts,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_as_plan import (
    as_new_cleanup,
    as_new_outcome,
    as_new_plan,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_copies import (
    copy_vms,
    list_plan,
    stage_catalog,
    stage_files,
    stage_plan,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_guard import (
    other_users,
    volume_running,
    volume_vms,
    volume_warnings,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, controller_login, resolve


def _plain(value: Any) -> Any:
    """Ansible's lazy/tagged containers → plain Python (JSON round-trip safe types)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def settings(raw, defaults, operation, controllers, snapcreator_text=None, snapcreator_path=None):
    try:
        return resolve(_plain(raw), _plain(defaults), str(operation), _plain(controllers),
                       None if snapcreator_text is None else str(snapcreator_text),
                       None if snapcreator_path is None else str(snapcreator_path))
    except SettingsError as exc:
        raise AnsibleFilterError("kvmsnap pre-flight: %s" % exc) from None


CONTROLLER_VARS = ("ontap_hostname", "ontap_port", "ontap_username", "ontap_transport", "ontap_validate_certs",
                   "ontap_ca_path", "ontap_cert_file", "ontap_key_file", "ontap_data_addresses", "ansible_host")


def controller_vars(names, hostvars):
    """{controller: {the connection host vars the roles check}} - never the password itself."""
    out = {}
    for name in names or []:
        hv = hostvars[name]
        entry = {}
        for key in CONTROLLER_VARS:
            if key in hv:
                entry[key] = _plain(hv[key])
        entry["has_password"] = bool(hv.get("ontap_password")) if "ontap_password" in hv else False
        out[str(name)] = entry
    return out


CONNECTION_VARS = (("ontap_port", "port"), ("ontap_username", "username"), ("ontap_password", "password"),
                   ("ontap_cert_file", "cert_file"), ("ontap_key_file", "key_file"),
                   ("ontap_validate_certs", "validate_certs"), ("ontap_ca_path", "ca_path"),
                   ("ontap_transport", "transport"))

# the host vars that give a controller its own login (else the credential in the environment gives it)
LOGIN_VARS = ("ontap_username", "ontap_password", "ontap_cert_file")


def controller_conn(name, hostvars, retries=3):
    """The ONTAP connection options of controller NAME (contains secrets: use no_log): what the roles give every
    ONTAP call, as `module_defaults` of group/kvmsnap.core.ontap or of vm_backup. The login comes from its host vars,
    else from the credential in the environment (`_settings.controller_login`); with a password login both username
    and password are set, so a module never mixes in the environment's default account."""
    hv = hostvars[name]
    entry = {"hostname": _plain(hv["ontap_hostname"]) if "ontap_hostname" in hv else str(name),
             "retries": int(retries)}
    for key, opt in CONNECTION_VARS:
        if key in hv and hv[key] not in (None, ""):
            entry[opt] = _plain(hv[key])
    plain = {key: _plain(hv[key]) for key in LOGIN_VARS if key in hv}
    try:
        login = controller_login(str(name), plain, os.environ)
    except SettingsError as exc:
        raise AnsibleFilterError("kvmsnap pre-flight: %s" % exc) from None
    if login["username"] is not None:  # a certificate login has neither (a module refuses password + cert_file)
        entry["username"] = login["username"]
        entry["password"] = login["password"]
    return entry


def copy_controller_conn(vol, hostvars, retries=3):
    """The connection of the controller that holds the copy of restore-plan volume VOL (``copy_controller``, a copy on
    another cluster), or None when the copy is on the volume's own controller (the role then omits the option)."""
    copy = vol.get("copy_controller")
    if not copy or copy == vol.get("controller"):
        return None
    return controller_conn(copy, hostvars, retries)


def controller_conns(names, hostvars, retries=3):
    """vm_info's `controllers` option from the controllers' host vars (contains secrets: use no_log)."""
    return [dict(name=str(name), **controller_conn(name, hostvars, retries)) for name in names or []]


def vm_records(result, host, resolved, controllers):
    return normalize(str(host), _plain(result), _plain(resolved), _plain(controllers))


def backup_plan(per_host, resolved):
    return _plan.backup_plan(_plain(per_host), _plain(resolved))


def vm_table(vms):
    return table(_plain(vms))


def catalog(snapshot_lists: List[Any], volumes: List[str]) -> List[Dict[str, Any]]:
    """ontap_snapshot_info results (one per controller) → one record per snapshot name, with the volumes that
    have it and its trust state: {name, policy, run, host, state, consistency, ontap_state, create_time,
    create_time_iso, volumes: [ctrl:svm:vol], missing, complete, ours}."""
    return build_catalog(_plain(snapshot_lists), _plain(volumes))


def full_volumes(results, limit=1023):
    """ctrl:svm:volume of the volumes whose snapshot count leaves no room for one more."""
    counts: Dict[str, int] = {}
    for item in _plain(results):
        ctrl = item.get("controller") or item.get("item")
        for snap in item.get("snapshots") or []:
            key = "%s:%s:%s" % (ctrl, snap.get("svm"), snap.get("volume"))
            counts[key] = counts.get(key, 0) + 1
    return sorted(k for k, n in counts.items() if n >= int(limit))


def existing_snapshot(results, name, volume_keys):
    """What snapshot NAME already existing on the run's volumes (ctrl:svm:volume) means, from ontap_snapshot_info
    results (one per controller): {verdict: free|done|clash, kind, present, missing, reason}; only a confirmed
    (good) backup on every volume makes a rerun a no-op (_snapshot_naming.existing_set decides)."""
    found: Dict[str, Any] = {key: None for key in _plain(volume_keys)}
    for item in _plain(results):
        ctrl = item.get("controller") or item.get("item")
        for snap in item.get("snapshots") or []:
            key = "%s:%s:%s" % (ctrl, snap.get("svm"), snap.get("volume"))
            if snap.get("name") == name and key in found:
                found[key] = snap
    return existing_set(str(name), found, None, accept="good")


def newer_snapshots(records, snapshot, volume_keys):
    """Snapshots newer than SNAPSHOT on the given volumes (what a whole-volume restore would delete)."""
    records = _plain(records)
    snap = _plain(snapshot)
    keys = set(_plain(volume_keys))
    return [{"name": r["name"], "volumes": sorted(keys & set(r["volumes"]))} for r in records
            if (r.get("create_time") or 0) > (snap.get("create_time") or 0) and keys & set(r["volumes"]) and r["name"] != snap.get("name")]


def select_snapshot(records, spec, protected=None, requested=None, operation="restore"):
    """Pick the snapshot to restore: 'latest' (newest good backup every needed volume has; with PROTECTED - a list of
    backup_manifest state=protected results - and the REQUESTED VMs, the newest that protected them all), a name
    (a non-good one only with kvmsnap_restore_allow_crash), or a JMESPath query (its result must be a good backup).
    OPERATION verify: the same forms under kvmsnap_verify_snapshot, good backups only (no override)."""
    merged: Optional[Dict[str, List[Any]]] = None
    if protected is not None:
        merged = {}
        for res in _plain(protected):
            for snap, entries in ((res or {}).get("protected") or {}).items():
                merged.setdefault(snap, []).extend(entries)
    wanted = None if requested in (None, "all") else list(_plain(requested))
    try:
        return select_from_catalog(_plain(records), _plain(spec), merged, wanted, str(operation))
    except CatalogError as exc:
        raise AnsibleFilterError("kvmsnap %s pre-flight: %s" % (operation, exc)) from None


def backup_check(records, protected, vms, max_age_hours, failed_hosts=None, now=None):
    """The monitoring check: each VM's newest good backup and its age (see plugin_utils/_backup_check).
    PROTECTED: backup_manifest state=protected results of the KVM hosts (merged here)."""
    merged: Dict[str, List[Any]] = {}
    for res in _plain(protected or []):
        for snap, entries in ((res or {}).get("protected") or {}).items():
            merged.setdefault(snap, []).extend(entries)
    return check_vms(_plain(vms), _plain(records), merged, float(max_age_hours), now=now,
                     failed_hosts=_plain(failed_hosts or []))


def async_loop_results(wait, job_var, loop_var):
    """An async_status wait loop over background jobs -> the loop result the jobs' task would have registered."""
    return foreground(_plain(wait), str(job_var), str(loop_var))


def run_report(operation, run_id, vms, volumes, snapshot=None, started=None, finished=None, warnings=None,
               errors=None, extra=None):
    return build_report(str(operation), str(run_id), _plain(vms), _plain(volumes), snapshot=snapshot,
                        started=started, finished=finished, warnings=_plain(warnings or []),
                        errors=_plain(errors or []), extra=_plain(extra or {}))


def backup_outcome(plan, per_host, allow_crash=False):
    return fence_outcome(_plain(plan), _plain(per_host), allow_crash=bool(allow_crash))


def backup_verified(vms, per_host):
    """backup_outcome.vms after each host's check in the snapshot (backup_verify facts, by host)."""
    return apply_verification(_plain(vms), _plain(per_host))


def lun_files_wanted(vms):
    """{controller: ['svm:/vol/<volume>/<lun>']} of the LUN disks of VMS (what to look up in the snapshot)."""
    return verify_lun_files(_plain(vms) or [])


def lun_files_answers(results):
    """The looped ontap_snapshot_info (files) results → {controller: files, or the error text}."""
    out = {}
    for r in _plain(results) or []:
        item = r.get("item")
        ctrl = item.get("key") if isinstance(item, dict) else item
        if ctrl is not None:
            out[ctrl] = str(r.get("msg") or "no answer") if r.get("failed") or "files" not in r else r["files"]
    return out


def backup_volumes(volumes, mirrors, prunes, snapshot):
    return merge_post(_plain(volumes), _plain(mirrors or []), _plain(prunes or []), snapshot)


def remote_copy_asks(primary_results, controllers):
    """ontap_snapshot_info results of the primaries (copies=true) → which inventory controller to ask for which
    copy another cluster holds: [{controller, location}]."""
    return _remote_copies.ask_plan(_remote_copies.remote_asks(_plain(primary_results)), [str(c) for c in _plain(controllers) or []])


def remote_copies(primary_results, answers):
    """The answers of remote_copy_asks' questions → {results (catalogue input), held, notes}."""
    return _remote_copies.remote_copies(_remote_copies.remote_asks(_plain(primary_results)), _plain(answers))


def mirror_update_asks(primary_results, controllers):
    """ontap_snapmirror results of the primaries → which inventory controller to ask to update the relationships
    another cluster holds: [{controller, primary, volumes}]."""
    return _remote_copies.update_asks(_plain(primary_results), [str(c) for c in _plain(controllers) or []])


def mirror_update_results(primary_results, answers):
    """The answers of mirror_update_asks' questions as results of the primaries' controllers (backup report)."""
    return _remote_copies.update_results(_plain(primary_results), _plain(answers))


def copy_list(datastores, snapshot):
    """The .kvmsnap/ directory of each datastore in its copy (what ontap_snapshot_info lists)."""
    return list_plan(_plain(datastores), _plain(snapshot))


def copy_listed(results):
    """The looped ontap_snapshot_info listings → [{key, source, uuids, refused, error}] (the names checked)."""
    out: List[Dict[str, Any]] = []
    for r in _plain(results) or []:
        entry = r.get("entry") or {}
        if r.get("failed"):
            out.append({"key": entry.get("key"), "source": entry.get("source"), "uuids": [], "refused": [],
                        "error": "%s: %s" % (entry.get("source"), r.get("msg") or "no answer")})
        else:
            out.append(dict(copy_vms(entry, r), key=entry.get("key"), source=entry.get("source")))
    return out


def copy_stage(datastores, found, snapshot, run_id, state_dir):
    """Where the manifests of a restore from a SnapMirror/SnapVault copy are staged, per datastore."""
    return stage_plan(_plain(datastores), _plain(found), _plain(snapshot), str(run_id), str(state_dir))


def copy_stage_files(entry, answer):
    """The files of a copy_stage entry the copy holds (ontap_snapshot_info's answer)."""
    return stage_files(_plain(entry), _plain(answer))


def copy_stage_catalog(pair):
    """(copy_stage entry, ontap_snapshot_info answer) → the staged VM directories to copy into the local catalog."""
    entry, answer = _plain(pair)
    return stage_catalog(entry, answer)


def restore_selection(per_host, requested, snapshot):
    return restore_plan(_plain(per_host), _plain(requested), _plain(snapshot))


def volume_conflicts(plan, files_by_volume, discovered):
    return volume_restore_conflicts(_plain(plan), _plain(files_by_volume), _plain(discovered))


def ds_volumes(controller, datastores):
    """['svm:volume', …] of the datastores served by CONTROLLER."""
    return sorted({"%s:%s" % (d["svm"], d["volume"]) for d in _plain(datastores) if d.get("controller") == controller})


def restore_host_input(host, hostvars):
    """What restore_selection needs from one host's facts: manifests read, refused ones, current VM states."""
    hv = hostvars[host]
    read = _plain(hv.get("restore_manifests") or {})
    info = _plain(hv.get("discover_vm_info") or {})
    return {"manifests": read.get("manifests") or [], "invalid": read.get("invalid") or [],
            "current": {vm.get("uuid"): vm.get("state") for vm in info.get("vms") or []},
            "datastore_files": read.get("datastore_files") or {}, "notes": read.get("notes") or [],
            "datastores": _plain(hv.get("restore_datastores") or [])}


def datastore_files_by_volume(hosts_vars):
    """{ctrl:svm:volume: [files]} from each host's restore_datastores + restore_manifests.datastore_files."""
    out: Dict[str, List[str]] = {}
    for hv in hosts_vars:
        files = _plain((hv.get("restore_manifests") or {}).get("datastore_files") or {})
        for ds in _plain(hv.get("restore_datastores") or []):
            key = "%s:%s:%s" % (ds.get("controller"), ds.get("svm"), ds.get("volume"))
            out.setdefault(key, [])
            for f in files.get(ds.get("path"), []):
                f = _ds_paths.in_volume(_ds_paths.offset(ds), f)  # listed inside the datastore; compared in the volume
                if f not in out[key]:
                    out[key].append(f)
    return out


def _discovered(hosts, hostvars):
    """({host: discover_vms}, {host: libvirt identity}, [datastore records of every host])."""
    found, ident, stores = {}, {}, []
    for host in hosts:
        hv = hostvars[host]
        found[host] = _plain(hv.get("discover_vms") or [])
        lh = _plain((hv.get("discover_vm_info") or {}).get("libvirt_host") or {})
        ident[host] = "%s|%s" % (lh.get("uuid"), lh.get("hostname")) if lh.get("uuid") or lh.get("hostname") else None
        stores += _plain(hv.get("restore_datastores") or [])
    return found, ident, stores


def restore_guard(plan, hosts, hostvars):
    """Refusals: a target file (disk, NVRAM) or the UUID of a VM to restore in use by a VM of any host."""
    found, ident = _discovered(hosts, hostvars)[:2]
    return other_users(_plain(plan), found, ident)


def restore_as_plan(plan, restore_as, start, hosts, hostvars):
    """The restore plan with each VM's copy (new name, UUID, paths) and each volume's restore_paths."""
    return as_new_plan(_plain(plan), str(restore_as), bool(start), _discovered(hosts, hostvars)[0])


def restore_as_result(plan, per_host, disks):
    """Report entries {vms, volumes} of a restore as new VMs."""
    return as_new_outcome(_plain(plan), _plain(per_host), _plain(disks or {}))


def restore_as_cleanup(plan, host, disks, start):
    """After a failed restore as new VMs: the files this run restored for HOST's copies that were not defined."""
    return as_new_cleanup(_plain(plan), str(host), _plain(disks or {}), _plain(start or {}))


def restore_volume_guard(plan, hosts, hostvars, newer):
    """Volume mode: {vms: every VM of any host on the volumes, running: refusals, warnings: [...]}."""
    found, _ident, stores = _discovered(hosts, hostvars)
    on_volume = volume_vms(_plain(plan), found, stores)
    return {"vms": on_volume, "running": volume_running(on_volume),
            "deleted_snapshots": sorted({str(x.get("name")) for x in _plain(newer or [])}),
            "warnings": volume_warnings(_plain(plan), _plain(newer or []), on_volume)}


def restore_result(plan, per_host, disks, safety, snapshot, rollback=None):
    return restore_outcome(_plain(plan), _plain(per_host), _plain(disks or {}), _plain(safety or {}), snapshot,
                           _plain(rollback or {}))


def restore_aside(per_host_stop):
    return _restore_journal.aside(_plain(per_host_stop))


def restore_journal(plan, host, run_id, snapshot, safety, stage):
    return _restore_journal.journal(_plain(plan), host, run_id, snapshot, safety, stage)


def restore_resume(plan, journals, snapshot):
    return _restore_journal.resume(_plain(plan), _plain(journals), snapshot)


def restore_journal_entry(slurped):
    return _restore_journal.entry(_plain(slurped))


def restore_stopped(stop):
    return _restore_journal.stopped(_plain(stop or {}))


def restore_rolled_back(rollback):
    return _restore_journal.rolled_back(_plain(rollback or {}))


def restore_overwritten(disks):
    return _restore_journal.overwritten(_plain(disks or {}))


def verify_vms(manifests):
    """backup_manifest_info's manifests -> the vms option of vm_verify (name, uuid, xml, nvram_file)."""
    return _verify_outcome.vm_inputs(_plain(manifests or []))


def verify_marks(record):
    """The catalog record of a snapshot -> per controller the volumes to mark verified ([{controller, volumes}])."""
    return _verify_outcome.marks(_plain(record))


def verify_outcome(results, manifests, snapshot, failed_hosts=None):
    """Every host's vm_verify result and manifest read -> the verify run's outcome (verified only when every VM
    booted and passed, nothing was refused and no host failed)."""
    return _verify_outcome.outcome(_plain(results or {}), _plain(manifests or {}), _plain(snapshot or {}),
                                   _plain(failed_hosts or []))


def report_stats(report):
    return stats(_plain(report))


class FilterModule:
    def filters(self):
        return {
            "settings": settings,
            "controller_vars": controller_vars,
            "controller_conn": controller_conn,
            "controller_conns": controller_conns,
            "copy_controller_conn": copy_controller_conn,
            "vm_records": vm_records,
            "backup_plan": backup_plan,
            "vm_table": vm_table,
            "catalog": catalog,
            "full_volumes": full_volumes,
            "existing_snapshot": existing_snapshot,
            "newer_snapshots": newer_snapshots,
            "select_snapshot": select_snapshot,
            "run_report": run_report,
            "backup_check": backup_check,
            "async_loop_results": async_loop_results,
            "report_stats": report_stats,
            "backup_outcome": backup_outcome,
            "backup_volumes": backup_volumes,
            "backup_verified": backup_verified,
            "lun_files_wanted": lun_files_wanted,
            "lun_files_answers": lun_files_answers,
            "restore_selection": restore_selection,
            "mirror_update_asks": mirror_update_asks,
            "mirror_update_results": mirror_update_results,
            "remote_copy_asks": remote_copy_asks,
            "remote_copies": remote_copies,
            "copy_list": copy_list,
            "copy_listed": copy_listed,
            "copy_stage": copy_stage,
            "copy_stage_files": copy_stage_files,
            "copy_stage_catalog": copy_stage_catalog,
            "restore_result": restore_result,
            "restore_journal": restore_journal,
            "restore_resume": restore_resume,
            "restore_overwritten": restore_overwritten,
            "restore_journal_entry": restore_journal_entry,
            "restore_aside": restore_aside,
            "restore_stopped": restore_stopped,
            "restore_rolled_back": restore_rolled_back,
            "ds_volumes": ds_volumes,
            "restore_host_input": restore_host_input,
            "datastore_files_by_volume": datastore_files_by_volume,
            "volume_conflicts": volume_conflicts,
            "restore_guard": restore_guard,
            "restore_volume_guard": restore_volume_guard,
            "restore_as_plan": restore_as_plan,
            "restore_as_result": restore_as_result,
            "restore_as_cleanup": restore_as_cleanup,
            "verify_vms": verify_vms,
            "verify_marks": verify_marks,
            "verify_outcome": verify_outcome,
        }
