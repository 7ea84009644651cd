# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_info's discovery: the host's domains, their disks and where each disk lives on ONTAP.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import socket
import time
import traceback
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Set

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import DomainXmlError, parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import (
    StorageInventory,
    StorageMapper,
    parse_datastores,
    shared_lun_problems,
    summarize,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_mapping import parse_vm_mapping

JMESPATH_IMPORT_ERROR: Optional[str]
try:
    import jmespath
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None

DISK_KEYS = ("path", "target", "bus", "device", "type", "format", "readonly", "shareable", "backing_chain")


class VmInfoError(KvmsnapError):
    pass


def _gather(conn, wanted, not_found=None):
    """[(parsed xml, state code, persistent)] for all domains, or for the wanted names/UUIDs.

    Unknown wanted VMs fail, or are appended to not_found when that is a list.
    """
    if wanted:
        found, unknown = _libvirt.lookup_domains(conn, wanted)
        doms = [dom for _ident, dom in found]
        if unknown and not_found is not None:
            not_found[:] = unknown
        elif unknown:
            raise VmInfoError("vms: libvirt at %s knows no VM %s; check the names/UUIDs with 'virsh -c %s list --all'."
                              % (conn.getURI(), ", ".join(repr(u) for u in unknown), conn.getURI()))
    else:
        doms = conn.listAllDomains(0)
    transient: Optional[Set[str]]
    try:
        transient = {dom.UUIDString() for dom in conn.listAllDomains(_libvirt.libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)}
    except _libvirt.libvirt.libvirtError:
        transient = None
    states = {}
    try:
        # NOWAIT: never wait for a domain job (a freeze or a migration in progress) just to read the state
        nowait = getattr(_libvirt.libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
        stats = conn.domainListGetStats(doms, _libvirt.libvirt.VIR_DOMAIN_STATS_STATE, nowait) if doms else []
        for dom, values in stats:
            states[dom.UUIDString()] = values.get("state.state")
    except (_libvirt.libvirt.libvirtError, AttributeError):
        states = {}
    out = []
    for dom in doms:
        try:
            xml = dom.XMLDesc(0)
            uuid = dom.UUIDString()
            state = states.get(uuid)
            if state is None:
                state = dom.state()[0]
            persistent = (uuid not in transient) if transient is not None else bool(dom.isPersistent())
        except _libvirt.libvirt.libvirtError as err:
            if _libvirt.error_code(err) == _libvirt.VIR_ERR_NO_DOMAIN and not wanted:
                continue  # went away while we listed
            raise
        out.append((xml, state, persistent))
    return out


def _vm_record(xml, state, persistent):
    parsed = parse_domain_xml(xml)
    disks = []
    for disk in parsed["disks"]:
        disks.append({key: disk.get(key) for key in DISK_KEYS})
    return {
        "name": parsed["name"],
        "uuid": parsed["uuid"],
        "state": _libvirt.state_name(state),
        "persistent": persistent,
        "disks": disks,
        "nvram": parsed["nvram"],
        "loader": parsed["loader"],
        "agent": parsed["agent"],
    }


def _records(raw, uri):
    vms = []
    for xml, state, persistent in raw:
        try:
            vms.append(_vm_record(xml, state, persistent))
        except DomainXmlError as exc:
            raise VmInfoError("libvirt at %s returned a domain XML that does not parse: %s" % (uri, exc)) from None
    vms.sort(key=lambda vm: (vm["name"] or "", vm["uuid"] or ""))
    return vms


def _discovered_mapping(vms):
    out = []
    seen = set()
    for vm in vms:
        for disk in vm["disks"]:
            lun = disk.get("lun")
            if lun and disk.get("controller"):
                key = (vm["name"], disk["controller"], lun["path"])
                if key not in seen:
                    seen.add(key)
                    out.append({"vm": vm["name"], "controller": disk["controller"], "svm": disk.get("svm"),
                                "volume": disk.get("volume"), "path": lun["path"]})
    return out


def _controller_factory(params, module_name):
    def factory():
        conn_params = {k: v for k, v in params.items() if k != "name"}
        return connect(conn_params, module_name)
    return factory


def _apply_query(vms, query):
    try:
        selected = jmespath.search(query, vms)
    except jmespath.exceptions.JMESPathError as exc:
        raise VmInfoError("query: %r is not a valid JMESPath expression: %s" % (query, exc)) from None
    if selected is None:
        return []
    if not isinstance(selected, list) or not all(isinstance(v, dict) and "uuid" in v for v in selected):
        raise VmInfoError("query: %r must select VMs (a list of VM objects, e.g. [?state=='running']), "
                          "not %s; project fields after registering the result." % (query, type(selected).__name__))
    return selected


def _libvirt_host(conn):
    """Who answers at the URI: two inventory names of one libvirt see the same domains (restore guard)."""
    try:
        host_uuid = (ET.fromstring(conn.getCapabilities()).findtext("host/uuid") or "").strip() or None
    except Exception:
        host_uuid = None
    try:
        name = conn.getHostname()
    except Exception:
        name = None
    return {"hostname": name, "uuid": host_uuid, "uri": conn.getURI()}


def discover(module: AnsibleModule) -> Dict[str, Any]:
    p = module.params
    started = time.monotonic()
    if p["query"] and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
    host = socket.gethostname()
    if (p["uri"] or "").split(":", 1)[0].endswith("+tcp"):
        module.warn("uri %s uses the unencrypted TCP transport; use qemu+ssh:// or qemu+tls:// (or the local "
                    "qemu:///system socket) so the domain XML does not cross the network in clear text." % p["uri"])

    vm_mapping = parse_vm_mapping(p["vm_mapping"])
    datastores = parse_datastores(p["datastores"])
    inventory = StorageInventory.from_option(p["storage_inventory"])
    for ctrl in p["controllers"] or []:
        inventory.add_controller(ctrl["name"], _controller_factory(ctrl, "vm_info"))

    timings = {}
    mark = [time.monotonic()]

    def lap(name):
        now = time.monotonic()
        timings[name] = round((now - mark[0]) * 1000.0, 1)
        mark[0] = now

    lap("options_ms")
    session = _libvirt.LibvirtSession(p["uri"], readonly=True, retries=p["retries"])
    try:
        session.conn  # noqa: B018 - open now, so the connect time is measured on its own
        lap("connect_ms")
        libvirt_host = session.call(_libvirt_host)
        not_found: Optional[List[str]] = [] if p["unknown_vms"] == "report" else None
        raw = session.call(lambda conn: _gather(conn, p["vms"], not_found))
        lap("list_ms")
        vms = _records(raw, p["uri"])
        lap("parse_ms")
        problems = []
        if p["map_storage"]:
            mapper = StorageMapper(inventory, datastores, vm_mapping, p["host_root"])
            for vm in vms:
                problems.extend(mapper.map_vm(vm))
            everyone = vms
            if p["vms"] and any(d.get("lun") for vm in vms for d in vm["disks"]):
                # a LUN shared with a VM outside the selection makes the selected VM unprotectable too
                mine = {vm["uuid"] for vm in vms}
                others = [vm for vm in _records(session.call(lambda conn: _gather(conn, None)), p["uri"])
                          if vm["uuid"] not in mine]
                for vm in others:
                    mapper.map_vm(vm)
                everyone = vms + others
            problems.extend(shared_lun_problems(everyone))
        lap("map_ms")
    finally:
        session.close()

    if p["query"]:
        vms = _apply_query(vms, p["query"])
    selected = {vm["uuid"] for vm in vms}
    problems = [x for x in problems if x["uuid"] in selected]
    volumes, ds_summary = summarize(vms)
    lap("query_summary_ms")
    result = dict(changed=False, vms=vms, unprotectable=problems, volumes=volumes, datastores=ds_summary,
                  vm_mapping=_discovered_mapping(vms), not_found=not_found or [], timings=timings,
                  libvirt_host=libvirt_host)
    errors = [x for x in problems if x["severity"] == "error"]
    if errors and p["strict"]:
        shown = "; ".join(x["reason"] for x in errors[:20])
        more = " (and %d more)" % (len(errors) - 20) if len(errors) > 20 else ""
        result["elapsed_ms"] = round((time.monotonic() - started) * 1000.0, 1)
        raise VmInfoError("vm_info on %s (%s): %d disk problem(s) in %d VM(s): %s%s. Map them with datastores, "
                          "vm_mapping or controllers, or set strict: false to report them under unprotectable."
                          % (host, p["uri"], len(errors), len({x["vm"] for x in errors}), shown, more), result)
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000.0, 1)
    return result
