# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a NetApp Snap Creator KVM plug-in configuration file (KEY=VALUE) into kvmsnap role variables.

This module util is PRIVATE to the collection. It may change without notice.

`parse_config(text)` returns::

    {"vars": {"kvmsnap_retention": "daily:7,weekly:4", ...},   # what maps to a role variable
     "sources": {"kvmsnap_retention": "NTAP_SNAPSHOT_RETENTIONS (line 12)", ...},
     "ignored": [{"key": "NTAP_USERS", "line": 3, "reason": "..."}],           # never the value
     "notes": ["..."]}

and raises `SnapCreatorConfigError` (message names the line, the key and the allowed form) for a value
that maps but is invalid. Values of ignored keys are never returned (they may be credentials).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._retention import RetentionError, parse_retention
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    SnapshotNameError,
    validate_prefix,
)

KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
VM_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f]")
YES = ("y", "yes", "true", "1", "on")
NO = ("n", "no", "false", "0", "off")
MAX_TIMEOUT = 86400
MAX_RETRIES = 10

# Keys whose value is a credential or may contain one: never echoed anywhere.
SECRET_KEYS = ("NTAP_USERS", "NTAP_PWD_PROTECTION", "SC_AGENT_PASSWORD", "OM_PWD", "OM_USER",
               "VIBE_VCLOUD_PASSWD", "VIBE_VIRTUALCENTER_PASSWD", "ASUP_PASSWORD", "SENDTRAP_PASSWORD",
               "SNMP_COMMUNITY")

# Keys that are known and deliberately not mapped, with the reason shown to the user.
KNOWN_IGNORED: Dict[str, str] = {
    "NTAP_USERS": "controller credentials belong in the inventory (ontap_username/ontap_password host vars of "
                  "the ontap_controllers group, from vault or an AWX credential)",
    "NTAP_PWD_PROTECTION": "encrypted Snap Creator passwords are not read; put the credentials in the inventory",
    "VOLUMES": "volumes are discovered from each VM's disks; pin datastores with kvmsnap_datastores",
    "NTAP_SNAPSHOT_POLICIES": "choose the policy per run with kvmsnap_policy (retention per policy is "
                              "kvmsnap_retention)",
    "SNAP_TIMESTAMP_ONLY": "snapshot names always carry a UTC timestamp (<prefix>-<policy>_<timestamp>)",
    "NTAP_CONSISTENCY_GROUP_TIMEOUT": "the consistency-group fence timeout is managed by the ontap_snapshot "
                                      "module",
    "NTAP_CONSISTENCY_GROUP_WAFL_SYNC": "not needed: ONTAP consistency-group snapshots are used",
    "NTAP_SNAPMIRROR_WAIT": "SnapMirror updates wait up to kvmsnap_timeout",
    "NTAP_SNAPVAULT_WAIT": "SnapVault updates wait up to kvmsnap_timeout",
    "NTAP_SNAPVAULT_RETENTIONS": "SnapVault retention is the vault policy's, on the destination cluster",
    "NTAP_SNAPVAULT_SNAPSHOT": "the vault relationship transfers the snapshot by its SnapMirror label",
    "NTAP_SNAPSHOT_RETENTION_AGE": "age-based retention is not supported; use counts in kvmsnap_retention",
    "NTAP_SNAPSHOT_DELETE_BY_AGE_ONLY": "age-based retention is not supported; use counts in kvmsnap_retention",
    "NTAP_SNAPSHOT_NODELETE": "to keep every snapshot, leave the policy out of kvmsnap_retention",
    "NTAP_SNAPSHOT_DISABLE": "a backup run always takes a snapshot; run discover for a dry look",
    "NTAP_USE_EXTERNAL_SNAPSHOT": "restore from any snapshot with kvmsnap_restore_snapshot",
    "NTAP_SNAPSHOT_DEPENDENCY_IGNORE": "busy snapshots are skipped by pruning and reported",
    "NTAP_DFM_DATA_SET": "OnCommand/DFM datasets are not used",
    "NTAP_PM_UPDATE": "OnCommand/DFM protection manager is not used",
    "NTAP_OSSV_ENABLE": "OSSV is not supported",
    "APP_NAME": "the application is always KVM here",
    "APP_IGNORE_ERROR": "a quiesce failure always stops the run unless kvmsnap_quiesce_mode allows a fallback",
    "APP_QUIESCE_CMD01": "quiesce is done through libvirt (kvmsnap_quiesce_mode), not commands",
    "APP_UNQUIESCE_CMD01": "release is done through libvirt, not commands",
    "SC_AGENT": "no agent: the playbook runs on the KVM hosts of the kvm_hosts inventory group",
    "SC_AGENT_WATCHDOG_ENABLE": "the release watchdog on each KVM host is always on",
    "SC_AGENT_UNQUIESCE_TIMEOUT": "the release deadline is kvmsnap_quiesce_deadline",
    "SC_AGENT_LOG_ENABLE": "logs are the Ansible play output and the report under kvmsnap_report_dir",
    "CONFIG_TYPE": "not needed",
    "PLUGIN_TYPE": "not needed",
    "LOG_NUM": "reports are kept under kvmsnap_report_dir",
    "LOG_TRACE_ENABLE": "use ansible-playbook -v",
    "SC_TMP_DIR": "state lives in kvmsnap_state_dir",
    "USE_GLOBAL_CONFIG": "no global config: use group_vars",
    "TRANSPORT": "set ontap_transport (rest|zapi|auto) and ontap_port per controller in the inventory",
    "PORT": "set ontap_port per controller in the inventory",
    "ALLOW_IP_ADDR": "controllers are inventory hosts (ontap_hostname)",
}

# Keys that map, to which variable, and how their value is converted.
MAPPED = {
    "KVM_VM_MAPPING": "kvmsnap_vm_mapping",
    "KVM_RESTORE_VM_LIST": "kvmsnap_restore_vms",
    "KVM_VM_CONFIG_DIR": "kvmsnap_config_dir",
    "KVM_CMD_RETRY_COUNT": "kvmsnap_retries",
    "SC_AGENT_TIMEOUT": "kvmsnap_timeout",
    "NTAP_SNAPSHOT_RETENTIONS": "kvmsnap_retention",
    "NTAP_SNAPMIRROR_UPDATE": "kvmsnap_snapmirror_update",
    "NTAP_SNAPVAULT_UPDATE": "kvmsnap_snapvault_update",
    "SNAME": "kvmsnap_snapshot_prefix",
    "NTAP_SNAPSHOT_NAME": "kvmsnap_snapshot_prefix",
    "APP_DEFINED_RESTORE": "kvmsnap_restore_mode",
    "NTAP_CONSISTENCY_GROUP_SNAPSHOT": None,  # informational only, see _convert
}


class SnapCreatorConfigError(ValueError):
    """The configuration text is invalid; the message names the line, the key and the allowed form."""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _yes_no(key: str, line: int, value: str) -> bool:
    low = value.strip().lower()
    if low in YES:
        return True
    if low in NO:
        return False
    raise SnapCreatorConfigError("line %d: %s=%r is not valid; allowed: Y or N." % (line, key, value))


def _int(key: str, line: int, value: str, low: int, high: int) -> int:
    text = value.strip()
    if not text.isdigit():
        raise SnapCreatorConfigError("line %d: %s=%r is not valid; allowed: an integer from %d to %d."
                                     % (line, key, value, low, high))
    number = int(text)
    if number < low or number > high:
        raise SnapCreatorConfigError("line %d: %s=%d is out of range; allowed: an integer from %d to %d."
                                     % (line, key, number, low, high))
    return number


def _vm_list(key: str, line: int, value: str) -> List[str]:
    names = []
    for index, part in enumerate(value.split(","), start=1):
        name = part.strip()
        if not name:
            if index == len(value.split(",")) and index > 1:
                continue  # trailing comma
            raise SnapCreatorConfigError("line %d: %s entry %d is empty; allowed: VM names separated by ',' "
                                         "(e.g. VM1,VM2)." % (line, key, index))
        if VM_NAME_FORBIDDEN.search(name):
            raise SnapCreatorConfigError("line %d: %s entry %d contains control characters." % (line, key, index))
        if name in names:
            raise SnapCreatorConfigError("line %d: %s names VM %r twice." % (line, key, name))
        names.append(name)
    return names


def _vm_mapping(key: str, line: int, value: str) -> str:
    """Check the `VM:controller:path;…` form enough to give a line-numbered error; keep the string.

    The full parse (controller addresses, LUN paths) is vm_info's; here: entries, fields, duplicates.
    """
    text = value.strip()
    entries = text[:-1].split(";") if text.endswith(";") else text.split(";")
    seen: Dict[str, str] = {}
    for index, entry in enumerate(entries, start=1):
        if not entry.strip():
            raise SnapCreatorConfigError("line %d: %s entry %d is empty; allowed: 'vm:controller:path' entries "
                                         "separated by ';' (a trailing ';' is fine)." % (line, key, index))
        if "\t" in entry or "\n" in entry or "\uff1b" in entry:
            raise SnapCreatorConfigError("line %d: %s entry %d contains a tab or a full-width ';'; separate "
                                         "entries with ';' and fields with ':'." % (line, key, index))
        fields = entry.strip().split(":")
        bracketed = re.match(r"^([^:]+):\[([^\]]+)\]:(.+)$", entry.strip())
        if bracketed:
            fields = [bracketed.group(1), bracketed.group(2), bracketed.group(3)]
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise SnapCreatorConfigError("line %d: %s entry %d (%r) is not 'vm:controller:path' (an IPv6 "
                                         "controller goes in brackets: vm:[fe80::1]:/vol/v/lun)."
                                         % (line, key, index, entry.strip()))
        vm, _ctrl, path = (f.strip() for f in fields)
        if vm in seen and seen[vm] != path:
            raise SnapCreatorConfigError("line %d: %s maps VM %r twice (%s and %s); one path per VM entry is "
                                         "ambiguous." % (line, key, vm, seen[vm], path))
        seen[vm] = path
    return text


def _convert(key: str, line: int, value: str) -> Tuple[Optional[str], Any, Optional[str]]:
    """(variable, converted value, note) for a mapped key."""
    var = MAPPED[key]
    if key == "KVM_VM_MAPPING":
        return var, _vm_mapping(key, line, value), None
    if key == "KVM_RESTORE_VM_LIST":
        return var, _vm_list(key, line, value), None
    if key == "KVM_VM_CONFIG_DIR":
        path = value.strip()
        if not path.startswith("/") or "/../" in path + "/" or "\x00" in path:
            raise SnapCreatorConfigError("line %d: %s=%r is not valid; allowed: an absolute path without '..' "
                                         "(e.g. /etc/libvirt/qemu)." % (line, key, value))
        return var, path.rstrip("/") or "/", None
    if key == "KVM_CMD_RETRY_COUNT":
        return var, _int(key, line, value, 0, MAX_RETRIES), None
    if key == "SC_AGENT_TIMEOUT":
        return var, _int(key, line, value, 1, MAX_TIMEOUT), None
    if key == "NTAP_SNAPSHOT_RETENTIONS":
        try:
            parse_retention(value)
        except RetentionError as exc:
            raise SnapCreatorConfigError("line %d: %s: %s" % (line, key, exc)) from None
        return var, ",".join(part.strip() for part in value.strip().rstrip(",").split(",")), None
    if key in ("NTAP_SNAPMIRROR_UPDATE", "NTAP_SNAPVAULT_UPDATE"):
        return var, _yes_no(key, line, value), None
    if key in ("SNAME", "NTAP_SNAPSHOT_NAME"):
        prefix = value.strip()
        try:
            validate_prefix(prefix, key)
        except SnapshotNameError as exc:
            raise SnapCreatorConfigError("line %d: %s" % (line, exc)) from None
        return var, prefix, None
    if key == "APP_DEFINED_RESTORE":
        if _yes_no(key, line, value):
            return var, "files", None
        return var, "volume", ("APP_DEFINED_RESTORE=N maps to kvmsnap_restore_mode=volume, which is still "
                               "refused unless every file on the volume belongs to the VMs being restored")
    if key == "NTAP_CONSISTENCY_GROUP_SNAPSHOT":
        if _yes_no(key, line, value):
            return None, None, "NTAP_CONSISTENCY_GROUP_SNAPSHOT=Y: a consistent snapshot is the default"
        return None, None, ("NTAP_CONSISTENCY_GROUP_SNAPSHOT=N ignored: kvmsnap always takes one consistent "
                            "snapshot over all volumes of a controller")
    return None, None, None  # pragma: no cover - every MAPPED key is handled above


def parse_config(text: str) -> Dict[str, Any]:
    """Parse Snap Creator KEY=VALUE TEXT; see the module docstring for the result."""
    if not isinstance(text, str):
        raise SnapCreatorConfigError("the Snap Creator configuration must be text (KEY=VALUE lines).")
    result: Dict[str, Any] = {"vars": {}, "sources": {}, "ignored": [], "notes": []}
    first_seen: Dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(";"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not KEY_RE.match(key):
            shown = key if KEY_RE.match(key) else line[:40]
            raise SnapCreatorConfigError("line %d: %r is not a KEY=VALUE line; allowed: KEY=VALUE, blank lines "
                                         "and # comments." % (number, shown))
        key = key.upper()
        if key in first_seen:
            raise SnapCreatorConfigError("line %d: %s is set again (first on line %d); set each key once."
                                         % (number, key, first_seen[key]))
        first_seen[key] = number
        value = _unquote(value)
        if key in MAPPED:
            if not value.strip():
                continue  # unset in Snap Creator terms
            var, converted, note = _convert(key, number, value)
            if note:
                result["notes"].append(note)
            if var is None:
                continue
            if var in result["vars"]:
                previous = result["sources"][var]
                raise SnapCreatorConfigError("line %d: %s sets %s, already set by %s; keep one of them."
                                             % (number, key, var, previous))
            result["vars"][var] = converted
            result["sources"][var] = "%s (line %d)" % (key, number)
            if key == "SC_AGENT_TIMEOUT":
                result["vars"]["kvmsnap_quiesce_deadline"] = converted
                result["sources"]["kvmsnap_quiesce_deadline"] = "%s (line %d)" % (key, number)
            continue
        if not value.strip() and key not in SECRET_KEYS:
            continue  # empty and unmapped: nothing is lost
        reason = KNOWN_IGNORED.get(key)
        if reason is None:
            reason = "not a setting of the KVM plug-in that kvmsnap maps"
        result["ignored"].append({"key": key, "line": number, "reason": reason})
    return result


def merge_settings(current: Dict[str, Any], defaults: Dict[str, Any], file_vars: Dict[str, Any],
                   sources: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Apply FILE_VARS where the variable is still at its role default; variables set otherwise win.

    Returns {"vars": {var: effective value}, "from_file": [var, …], "overridden": [{var, source}, …]}.
    """
    effective: Dict[str, Any] = {}
    from_file: List[str] = []
    overridden: List[Dict[str, str]] = []
    for var, value in file_vars.items():
        if var in current and var in defaults and current[var] != defaults[var]:
            effective[var] = current[var]
            overridden.append({"var": var, "source": (sources or {}).get(var, "")})
            continue
        effective[var] = value
        from_file.append(var)
    return {"vars": effective, "from_file": from_file, "overridden": overridden}
