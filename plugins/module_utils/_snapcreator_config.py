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

No message ever contains a value or the raw text of a line: a password typed into the wrong key
(`SNAME=<password>`) or a line without '=' (`NTAP_USERS c1:admin/<password>`) must not reach the play
output, which is kept in CI logs and AWX job events. Errors say what is wrong with the value, never what it is.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import LIMITS
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import (
    MAX_KEEP,
    RetentionError,
    parse_retention,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    ALLOWED_FORM,
    NAME_RE,
    POLICY_RE,
    RESERVED_PREFIXES,
    SnapshotNameError,
    validate_prefix,
)

KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
VM_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f]")
YES = ("y", "yes", "true", "1", "on")
NO = ("n", "no", "false", "0", "off")
MAX_TIMEOUT = 86400
MAX_RETRIES = LIMITS["retries"][1]

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

# One example per mapped key, for the "allowed:" part of a message.
EXAMPLES = {
    "KVM_VM_MAPPING": "KVM_VM_MAPPING=VM1:cluster1:/vol/vol1/lun1;",
    "KVM_RESTORE_VM_LIST": "KVM_RESTORE_VM_LIST=VM1,VM2",
    "KVM_VM_CONFIG_DIR": "KVM_VM_CONFIG_DIR=/etc/libvirt/qemu",
    "KVM_CMD_RETRY_COUNT": "KVM_CMD_RETRY_COUNT=3",
    "SC_AGENT_TIMEOUT": "SC_AGENT_TIMEOUT=600",
    "NTAP_SNAPSHOT_RETENTIONS": "NTAP_SNAPSHOT_RETENTIONS=daily:7,weekly:4",
    "NTAP_SNAPMIRROR_UPDATE": "NTAP_SNAPMIRROR_UPDATE=Y",
    "NTAP_SNAPVAULT_UPDATE": "NTAP_SNAPVAULT_UPDATE=N",
    "SNAME": "SNAME=kvmsnap",
    "NTAP_SNAPSHOT_NAME": "NTAP_SNAPSHOT_NAME=kvmsnap",
    "APP_DEFINED_RESTORE": "APP_DEFINED_RESTORE=Y",
    "NTAP_CONSISTENCY_GROUP_SNAPSHOT": "NTAP_CONSISTENCY_GROUP_SNAPSHOT=Y",
}


class SnapCreatorConfigError(KvmsnapError, ValueError):
    """The configuration text is invalid; the message names the line, the key and the allowed form."""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _fail(line: int, key: str, problem: str, allowed: str) -> SnapCreatorConfigError:
    """The one error form: 'line N: KEY <problem>; allowed: <form>.' - never the value."""
    return SnapCreatorConfigError("line %d: %s %s; allowed: %s." % (line, key, problem, allowed))


def _known(key: str) -> bool:
    return key in MAPPED or key in KNOWN_IGNORED or key in SECRET_KEYS


def shown_key(written: str) -> Optional[str]:
    """The key as it may appear in a message, or None when it must not be shown.

    A key kvmsnap knows is shown in its canonical form; an unknown one only when it is written like a
    Snap Creator key (UPPER_CASE). Anything else in key position may be a secret typed on its own line.
    """
    if not KEY_RE.match(written):
        return None
    if _known(written.upper()):
        return written.upper()
    if re.match(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$", written):
        return written
    return None


def _allowed_form(key: str) -> str:
    if key in SECRET_KEYS:
        return ("%s=... - but kvmsnap does not read credentials from this file: put them in the inventory "
                "(ontap_username/ontap_password from vault or an AWX credential) and delete the line" % key)
    return "%s=VALUE (e.g. %s)" % (key, EXAMPLES.get(key, "%s=..." % key))


def _yes_no(key: str, line: int, value: str) -> bool:
    low = value.strip().lower()
    if low in YES:
        return True
    if low in NO:
        return False
    raise _fail(line, key, "is not Y or N", "Y or N (also yes/no, true/false, 1/0)")


def _int(key: str, line: int, value: str, low: int, high: int) -> int:
    text = value.strip()
    allowed = "an integer from %d to %d" % (low, high)
    if not text.isdigit():
        raise _fail(line, key, "is not an integer", allowed)
    number = int(text)
    if number < low or number > high:
        raise _fail(line, key, "is out of range", allowed)
    return number


def _vm_list(key: str, line: int, value: str) -> List[str]:
    allowed = "VM names separated by ',' (e.g. VM1,VM2)"
    names: List[str] = []
    parts = value.split(",")
    for index, part in enumerate(parts, start=1):
        name = part.strip()
        if not name:
            if index == len(parts) and index > 1:
                continue  # trailing comma
            raise _fail(line, key, "entry %d is empty" % index, allowed)
        if VM_NAME_FORBIDDEN.search(name):
            raise _fail(line, key, "entry %d contains control characters" % index, allowed)
        if name in names:
            raise _fail(line, key, "entry %d repeats entry %d" % (index, names.index(name) + 1),
                        "each VM once")
        names.append(name)
    return names


def _vm_mapping(key: str, line: int, value: str) -> str:
    """Check the `VM:controller:path;…` form enough to give a line-numbered error; keep the string.

    The full parse (controller addresses, LUN paths) is vm_info's; here: entries, fields, duplicates.
    """
    allowed = ("'vm:controller:path' entries separated by ';' (a trailing ';' is fine; an IPv6 controller goes "
               "in brackets: vm:[fe80::1]:/vol/v/lun)")
    text = value.strip()
    entries = text[:-1].split(";") if text.endswith(";") else text.split(";")
    seen: Dict[str, Tuple[int, str]] = {}
    for index, entry in enumerate(entries, start=1):
        if not entry.strip():
            raise _fail(line, key, "entry %d is empty" % index, allowed)
        if "\t" in entry or "\n" in entry or "\uff1b" in entry:
            raise _fail(line, key, "entry %d contains a tab or a full-width ';'" % index,
                        "entries separated by ';' and fields by ':'")
        fields = entry.strip().split(":")
        bracketed = re.match(r"^([^:]+):\[([^\]]+)\]:(.+)$", entry.strip())
        if bracketed:
            fields = [bracketed.group(1), bracketed.group(2), bracketed.group(3)]
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise _fail(line, key, "entry %d has %d non-empty ':' fields, not 3 (vm:controller:path)"
                        % (index, len([f for f in fields if f.strip()])), allowed)
        vm, _ctrl, path = (f.strip() for f in fields)
        if vm in seen and seen[vm][1] != path:
            raise _fail(line, key, "entry %d maps the VM of entry %d to a second path (ambiguous)"
                        % (index, seen[vm][0]), "one path per VM entry")
        seen.setdefault(vm, (index, path))
    return text


def _retention(key: str, line: int, value: str) -> str:
    """Same rules as _retention.parse_retention, with value-free messages."""
    allowed = ("'policy:keep' entries separated by ',' (e.g. daily:7,weekly:4): policy 1-32 characters from "
               "[A-Za-z0-9_], keep an integer from 1 to %d" % MAX_KEEP)
    entries = value.strip().rstrip(",").split(",")
    policies: List[str] = []
    for index, entry in enumerate(entries, start=1):
        policy, sep, keep = entry.strip().partition(":")
        policy, keep = policy.strip(), keep.strip()
        if not entry.strip():
            problem = "entry %d is empty" % index
        elif not sep:
            problem = "entry %d has no ':'" % index
        elif not POLICY_RE.match(policy) or len(policy) > 32:
            problem = "entry %d: the policy name is not valid" % index
        elif policy in policies:
            problem = "entry %d repeats the policy of entry %d" % (index, policies.index(policy) + 1)
        elif not keep.isdigit():
            problem = "entry %d: the count is not an integer" % index
        elif not 1 <= int(keep) <= MAX_KEEP:
            problem = "entry %d: the count is out of range" % index
        else:
            policies.append(policy)
            continue
        raise _fail(line, key, problem, allowed)
    try:
        parse_retention(value)
    except RetentionError:  # a rule added there and not yet here: still no value in the message
        raise _fail(line, key, "is not a valid retention", allowed) from None
    return ",".join(part.strip() for part in value.strip().rstrip(",").split(","))


def _prefix(key: str, line: int, value: str) -> str:
    """Same rules as _snapshot_naming.validate_prefix, with value-free messages."""
    prefix = value.strip()
    allowed = "a snapshot name prefix: %s; at most 200 characters" % ALLOWED_FORM
    if len(prefix) > 200:
        problem = "is longer than 200 characters"
    elif any(prefix.lower().startswith(reserved) for reserved in RESERVED_PREFIXES):
        problem = "starts with a reserved prefix"
    elif not re.match(r"^[A-Za-z0-9_.-]*$", prefix):
        problem = "contains characters that are not allowed"
    elif not NAME_RE.match(prefix):
        problem = "does not start with a letter or '_'"
    else:
        try:
            return validate_prefix(prefix, key)
        except SnapshotNameError:  # a rule added there and not yet here: still no value in the message
            problem = "is not a valid snapshot name prefix"
    raise _fail(line, key, problem, allowed)


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
            problem = "is not an absolute path" if not path.startswith("/") else "contains '..' or a NUL"
            raise _fail(line, key, problem, "an absolute path without '..' (e.g. /etc/libvirt/qemu)")
        return var, path.rstrip("/") or "/", None
    if key == "KVM_CMD_RETRY_COUNT":
        return var, _int(key, line, value, 0, MAX_RETRIES), None
    if key == "SC_AGENT_TIMEOUT":
        return var, _int(key, line, value, 1, MAX_TIMEOUT), None
    if key == "NTAP_SNAPSHOT_RETENTIONS":
        return var, _retention(key, line, value), None
    if key in ("NTAP_SNAPMIRROR_UPDATE", "NTAP_SNAPVAULT_UPDATE"):
        return var, _yes_no(key, line, value), None
    if key in ("SNAME", "NTAP_SNAPSHOT_NAME"):
        return var, _prefix(key, line, value), None
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


def _not_key_value(number: int, line: str) -> SnapCreatorConfigError:
    """A line that is not KEY=VALUE: name the key when it can be read (first word), never the rest."""
    first = re.match(r"^([A-Za-z][A-Za-z0-9_]*)", line)
    key = first.group(1).upper() if first else ""
    if key and _known(key):
        return _fail(number, key, "is not followed by '=' (the line is not KEY=VALUE; its text is not shown)",
                     _allowed_form(key))
    return SnapCreatorConfigError("line %d is not a KEY=VALUE line (its text is not shown: it may hold a secret); "
                                  "allowed: KEY=VALUE, blank lines and # comments." % number)


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
            raise _not_key_value(number, line)
        written, key = key, key.upper()
        if key in first_seen:
            raise SnapCreatorConfigError("line %d: %s is set again (first on line %d); allowed: each key once."
                                         % (number, shown_key(written) or "the key", first_seen[key]))
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
        result["ignored"].append({"key": shown_key(written) or "(key not shown: not in Snap Creator's KEY form)",
                                  "line": number, "reason": reason})
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
