# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading backup manifests on the KVM host: the logic of backup_manifest_info and the option checks it shares
with backup_manifest.

This module util is PRIVATE to the collection. It may change without notice.

- `ARGS` / `argument_spec(**extra)`: the argument-spec entries both modules share (libvirt `uri`/`retries`,
  `state_dir`, the datastores, the manifest key, ...).
- `check_common(params)`: the snapshot name and the manifest key, checked before anything is read or written.
- `read(params)`: the manifests of a snapshot, from the datastores' snapshot view and the local catalog, each
  vetted (signature, hashes, disks inside the host's datastores, domain XML policy with the host's libvirt facts).
- `catalog_volumes(params)`: the volumes the local catalog's manifests name (where a restore looks for SAN VMs).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_policy, _libvirt, _manifest_sig
from ansible_collections.kvmsnap.core.plugins.module_utils import _manifest as mf
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_STATE_DIR
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt_args import libvirt_argument_spec

ARGS: Dict[str, Dict[str, Any]] = libvirt_argument_spec(
    snapshot=dict(type="str"),
    datastores=dict(type="list", elements="path", default=[]),
    datastore_offsets=dict(type="dict", default={}),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    host=dict(type="str"),
    manifest_key=dict(type="str", no_log=True),
)


def argument_spec(**extra: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A module's argument spec: ARGS plus EXTRA (deep copies, never shared)."""
    spec = copy.deepcopy(ARGS)
    spec.update(copy.deepcopy(extra))
    return spec


class ManifestReadError(KvmsnapError):
    """An option or the KVM host's libvirt stops the read; the message names the host and what was not done."""


def check_snapshot_names(field: str, names: List[str]) -> None:
    """Snapshot names are joined into `.snapshot/<name>/` and catalog paths: never a path, never . or .."""
    for name in names:
        if "/" in name or name in (".", ".."):
            raise ManifestReadError("%s: %r is not a snapshot name." % (field, name))


def check_common(params: Mapping[str, Any]) -> None:
    """The snapshot name (never a path) and the manifest key (when given)."""
    if params.get("snapshot") is not None:
        check_snapshot_names("snapshot", [params["snapshot"]])
    if params.get("manifest_key"):
        try:
            _manifest_sig.key_id(params["manifest_key"])
        except _manifest_sig.ManifestKeyError as exc:
            raise ManifestReadError("manifest_key: %s." % exc) from None


def _host_checks(params: Mapping[str, Any]
                 ) -> Tuple[Any, Dict[str, Any], Callable[[List[str], str], Dict[str, List[str]]]]:
    """(libvirt session, host facts, users(paths, uuid)) from the KVM host's libvirt (read-only); the policy needs
    the facts and the users."""
    try:
        session = _libvirt.LibvirtSession(params["uri"], readonly=True, retries=params["retries"])
        facts = session.call(_domain_policy.host_facts)
        facts["firmware_dirs"] = list(facts["firmware_dirs"]) + list(params["boot_dirs"])
    except Exception as exc:
        raise ManifestReadError("%s: cannot read the host's capabilities at %s: %s; nothing was touched."
                                % (params.get("host") or "KVM host", params["uri"], exc)) from None

    index: Dict[str, Any] = {}

    def users(paths: List[str], uuid: str) -> Dict[str, List[str]]:
        if "all" not in index:  # one pass over the host's domains for all manifests
            index["all"] = session.call(_domain_policy.disk_index)
        return _domain_policy.users_in(index["all"], paths, uuid)
    return session, facts, users


def read(params: Mapping[str, Any]) -> Dict[str, Any]:
    """{manifests, invalid, missing, notes, datastore_files} of snapshot params['snapshot'] (see backup_manifest_info)."""
    offsets = params["datastore_offsets"] or {}
    roots = [mf.snapshot_root(ds, params["snapshot"], offsets.get(ds) or "/") for ds in params["datastores"]]
    roots.append(mf.catalog_root(params["state_dir"], params["snapshot"]))
    found = mf.find(roots)
    manifests: List[Dict[str, Any]] = []
    invalid: List[Dict[str, Any]] = []
    notes: List[str] = []
    keys = ([params["manifest_key"]] if params["manifest_key"] else []) + list(params["manifest_keys_old"])
    session, facts, users = _host_checks(params)
    try:
        for uuid, vm_dir in sorted(found.items()):
            try:
                man = mf.load(vm_dir)
                note = mf.check_signature(man, keys, params["unsigned_ok"])
                man = mf.vet(man, params["datastores"], facts, users)
            except mf.ManifestError as exc:
                invalid.append({"dir": vm_dir, "uuid": uuid, "error": str(exc)})
                continue
            notes += ([note] if note else []) + man["policy_rewritten"]
            manifests.append(man)
    finally:
        session.close()
    missing: List[str] = []
    if params["select"]:
        keep: List[Dict[str, Any]] = []
        for ident in params["select"]:
            match = [m for m in manifests if ident in (m["vm"]["name"], m["vm"]["uuid"])]
            if not match:
                missing.append(ident)
            keep += [m for m in match if m not in keep]
        manifests = keep
    return {"manifests": manifests, "invalid": invalid, "missing": missing, "notes": notes,
            "datastore_files": {ds: mf.list_files(ds) for ds in params["datastores"]}}


def catalog_volumes(params: Mapping[str, Any]) -> Dict[str, Any]:
    """{volumes, ignored, notes}: the volumes the local catalog names (of params['controllers'] only, when given)."""
    controllers: Optional[List[str]] = params.get("controllers")
    scan = mf.catalog_volumes(params["state_dir"], controllers=controllers)
    notes = ["local catalog entry %s (snapshot %s, policy %s) names controller %s, which is not in this inventory's "
             "ontap_controllers: ignored" % (e["file"], e["snapshot"], e["policy"] or "unknown", e["controller"])
             for e in scan["ignored"]]
    return {"volumes": scan["volumes"], "ignored": scan["ignored"], "notes": notes}
