# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_restore ``as_new``: define a copy of a backed-up VM under a new name next to the original.

This module util is PRIVATE to the collection. It may change without notice.

The saved XML passes the same checks as a restore in place (_domain_restore.validate_domain_xml: form, allow-list
policy, paths inside the allowed datastores), then _restore_as rewrites it (new name, UUID, MACs, disk and NVRAM
paths) and the result is checked again. The original VM is never looked at beyond "does this name/UUID exist":
it is not stopped, not redefined, and none of its files is written. Refused before anything is written: a
domain of the new name or UUID on the host, a new path another domain uses, an NVRAM file at the new NVRAM path,
and (``disks: absent``, the pre-flight) any file at a new disk path / (``disks: present``, after the ONTAP restore)
a new disk path that is not a regular file.
"""

from __future__ import annotations

import os
import stat
import uuid as _uuid
from typing import Any, Dict, List

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy, _domain_restore, _libvirt, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_restore import RestoreError
from ansible_collections.kvmsnap.core.plugins.module_utils._restore_as import RestoreAsError, rewrite_xml

NOT_WITH = ("vm", "aside_dir")


def _path_problems(paths: List[str], expect: str) -> List[str]:
    problems = []
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if expect == "present":
                problems.append("%s does not exist (restore it with ontap_restore restore_paths first)" % path)
            continue
        if expect == "absent":
            problems.append("%s already exists; a restore as a new VM never replaces a file" % path)
        elif not stat.S_ISREG(st.st_mode):
            problems.append("%s is not a regular file" % path)
    return problems


def run_restore_as(params: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """vm_restore with as_new. Raises RestoreError (with .result) when refused or failed."""
    lv = _libvirt
    spec = params["as_new"]
    for key in NOT_WITH:
        if params.get(key):
            raise RestoreError("%s: not allowed with as_new (the copy is a new VM; the original is never touched)."
                               % key)
    uri = params.get("uri") or lv.DEFAULT_URI
    allowed = [os.path.realpath(p) for p in (params.get("allowed_paths") or [])]
    result: Dict[str, Any] = {"changed": False, "actions": [], "agent": None, "existed": False}
    xml = _domain_restore.read_xml_file(params["domain_xml_path"]) if params.get("domain_xml_path") \
        else params.get("domain_xml") or ""
    new_uuid = spec.get("uuid") or str(_uuid.uuid4())
    disk_paths = {str(k): str(v) for k, v in (spec.get("disk_paths") or {}).items()}
    for src, dst in sorted(disk_paths.items()):
        if not os.path.isabs(dst) or ".." in dst.split("/"):
            raise RestoreError("as_new.disk_paths[%r]: %r is not an absolute path without '..'; nothing was "
                               "changed." % (src, dst))
    conn = lv.open_connection(uri, readonly=check_mode, retries=params.get("retries", 3))
    try:
        host = _domain_policy.host_facts(conn)
        host["firmware_dirs"] = list(host["firmware_dirs"]) + list(params.get("boot_dirs") or [])
        saved = _domain_restore.validate_domain_xml(xml, allowed, host=host)
        try:
            new = rewrite_xml(saved["xml"], spec["name"], new_uuid, disk_paths, spec.get("nvram_path"))
        except RestoreAsError as err:
            raise RestoreError(str(err), result) from None
        # the copy's XML through the same checks: every new path inside the allowed datastores / NVRAM dir
        info = _domain_restore.validate_domain_xml(new["xml"], allowed, host=host)
        result["source"] = {"name": saved["name"], "uuid": saved["uuid"]}
        result["vm"] = {"name": info["name"], "uuid": info["uuid"]}
        result["new"] = {"name": new["name"], "uuid": new["uuid"], "disks": new["disks"], "nvram": new["nvram"],
                         "macs": new["macs"], "started": False}
        result["rewritten"] = saved["rewritten"]
        result["xml_sha256"] = saved["sha256"]
        problems: List[str] = []
        for ident, kind in ((new["name"], "name"), (new["uuid"], "uuid")):
            try:
                other = lv.lookup_domain(conn, ident, kind=kind)
            except lv.DomainNotFound:
                continue
            problems.append("a VM with the %s %s exists on %s (%s)" % (kind, ident, uri, other.name()))
        new_files = [d["path"] for d in new["disks"]]
        nvram_new = (new["nvram"] or {}).get("path")
        busy = _domain_policy.disk_users(conn, new_files + ([nvram_new] if nvram_new else []), new["uuid"])
        problems += ["%s is used by VM %s" % (path, ", ".join(names)) for path, names in sorted(busy.items())]
        problems += _path_problems(new_files, spec.get("disks") or "present")
        if nvram_new:
            problems += _path_problems([nvram_new], "absent")
        if params.get("nvram"):
            if not nvram_new:
                problems.append("nvram: given, but the saved XML has no <os><nvram> path")
            elif not os.path.isfile(params["nvram"]):
                problems.append("nvram: %s does not exist or is not a file" % params["nvram"])
        if problems:
            raise RestoreError("refusing to restore VM %s as %s on %s: %s. Nothing was changed; choose another "
                               "name (kvmsnap_restore_as) or remove what is in the way." % (
                                   saved["name"], new["name"], uri, "; ".join(problems)), result)
        will_start = (params.get("start") or "auto") == "always"
        plan = ["define"] + (["nvram"] if params.get("nvram") else []) + (["start"] if will_start else [])
        result["prior_state"] = "absent"
        if check_mode:
            result.update(actions=plan, changed=True, state="absent",
                          msg="check mode: would %s VM %s as a copy of %s; nothing changed" % (
                              ", ".join(plan), new["name"], saved["name"]))
            return result
        locked = _domain_restore._lock_vm(params, info, result)
        try:
            dom = conn.defineXML(info["xml"])
            result["actions"].append("define")
            result["changed"] = True
            if params.get("nvram") and nvram_new:
                _domain_restore.copy_nvram(params["nvram"], nvram_new)
                result["actions"].append("nvram")
            if will_start:
                dom.create()
                result["actions"].append("start")
                result["new"]["started"] = True
                _domain_restore._verify(dom, info, int(params.get("verify_timeout", 120)), result)
            else:
                result["agent"] = "not started"
            result["state"] = _domain_restore._state(dom)
        except RestoreError:
            raise
        except Exception as err:
            if lv.libvirt is not None and isinstance(err, lv.libvirt.libvirtError):
                raise RestoreError("vm_restore of %s as %s on %s failed after %s: %s" % (
                    saved["name"], new["name"], uri, ", ".join(result["actions"]) or "no change", err),
                    result) from None
            raise
        finally:
            if locked:
                _lock.release(params["state_dir"], [info["uuid"]], locked)
        result["msg"] = "VM %s restored as new VM %s (%s); state %s, agent %s; VM %s untouched" % (
            saved["name"], new["name"], ", ".join(result["actions"]), result["state"], result["agent"], saved["name"])
        return result
    finally:
        try:
            conn.close()
        except Exception:
            pass
