# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side: resolve and check the role variables before anything is touched.

This plugin util is PRIVATE to the collection. It may change without notice.

`resolve(raw, defaults, operation, controllers, snapcreator_text, snapcreator_path)` returns the settings the
roles use (normalised, typed) or raises `SettingsError` whose message names the variable, the entry and
the allowed form. The Snap Creator file is applied where a variable is still at its role default.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import (
    DEFAULT_AGENT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_RETRIES,
    DEFAULT_STATE_DIR,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_args import FENCE_MODES, FENCES
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt import DEFAULT_URI
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import redact
from ansible_collections.kvmsnap.core.plugins.module_utils._restore_as import (
    SUFFIX_FORM,
    RestoreAsError,
    check_name,
    is_suffix,
    new_names,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import RetentionError, parse_retention
from ansible_collections.kvmsnap.core.plugins.module_utils._snapcreator_config import (
    SnapCreatorConfigError,
    merge_settings,
    parse_config,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import (
    SnapshotNameError,
    validate_policy,
    validate_prefix,
    validate_snapshot_name,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._vm_mapping import VmMappingError, parse_vm_mapping

# The role variables' defaults: the one source of the values in roles/*/defaults/main.yml and
# roles/*/meta/argument_specs.yml, which Ansible needs as literals (tests/unit/test_role_specs.py checks that
# they agree with this table) and of the fallbacks below.
DEFAULTS: Dict[str, Any] = {
    "kvmsnap_libvirt_uri": DEFAULT_URI,
    "kvmsnap_vms": [],
    "kvmsnap_datastores": [],
    "kvmsnap_vm_mapping": "",
    "kvmsnap_config_dir": "/etc/libvirt/qemu",
    "kvmsnap_retries": DEFAULT_RETRIES,
    "kvmsnap_timeout": 600,
    "kvmsnap_state_dir": DEFAULT_STATE_DIR,
    "kvmsnap_report_dir": "~/.kvmsnap/reports",
    "kvmsnap_snapcreator_config": "",
    "kvmsnap_snapshot_prefix": "kvmsnap",
    "kvmsnap_quiesce_mode": "auto",
    "kvmsnap_fence": "auto",
    "kvmsnap_agent_timeout": DEFAULT_AGENT_TIMEOUT,
    "kvmsnap_quiesce_deadline": DEFAULT_DEADLINE,
    "kvmsnap_allow_crash_consistent": False,
    "kvmsnap_policy": "daily",
    "kvmsnap_retention": "daily:7,weekly:4",
    "kvmsnap_catalog_keep_days": 0,
    "kvmsnap_snapshot_name": "",
    "kvmsnap_snapmirror_update": False,
    "kvmsnap_snapvault_update": False,
    "kvmsnap_snapmirror_label": "",
    "kvmsnap_manifest_key": "",
    "kvmsnap_manifest_key_file": "~/.config/kvmsnap/manifest.key",
    "kvmsnap_manifest_keys_old": [],
    "kvmsnap_restore_vms": [],
    "kvmsnap_restore_snapshot": "latest",
    "kvmsnap_restore_mode": "files",
    "kvmsnap_restore_force": False,
    "kvmsnap_restore_allow_crash": False,
    "kvmsnap_restore_volume_override": False,
    "kvmsnap_restore_safety_snapshot": True,
    "kvmsnap_prerestore_keep": 3,
    "kvmsnap_shutdown_timeout": 120,
    "kvmsnap_restore_unsigned_ok": [],
    "kvmsnap_restore_boot_dirs": [],
    "kvmsnap_restore_as": "",
    "kvmsnap_restore_start": False,
    "kvmsnap_check_max_age_hours": 26,
    "kvmsnap_check_report": "",
    "kvmsnap_verify_vms": "all",
    "kvmsnap_verify_snapshot": "latest",
    "kvmsnap_verify_command": [],
    "kvmsnap_verify_parallel": 2,
    "kvmsnap_verify_network": "",
    "kvmsnap_verify_dir": "/var/lib/kvmsnap-verify",
    "kvmsnap_verify_timeout": 300,
    "kvmsnap_verify_boot_marker": "",
    "kvmsnap_verify_memory_reserve": 1024,
    "kvmsnap_verify_mark": True,
}

QUIESCE_MODES = tuple(FENCE_MODES)
RESTORE_MODES = ("files", "volume")
TRANSPORTS = ("rest", "zapi", "auto")
TRUE = ("true", "yes", "y", "on", "1")
FALSE = ("false", "no", "n", "off", "0")
_OBJ_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,202}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:.]+\]?$")


class SettingsError(KvmsnapError, ValueError):
    """A role variable is invalid; the message names it and the allowed form."""


def _value(values: Mapping[str, Any], name: str) -> Any:
    """The variable NAME, or its default when it is not set."""
    return values.get(name, DEFAULTS[name])


def _value_or_default(values: Mapping[str, Any], name: str) -> Any:
    """The variable NAME, or its default when it is not set or empty."""
    return values.get(name) or DEFAULTS[name]


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in FALSE:
        return False
    raise SettingsError("%s: %r is not a boolean; allowed: true or false." % (name, value))


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError("%s: %r is not an integer; allowed: an integer from %d to %d." % (name, value, low, high))
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise SettingsError("%s: %r is not an integer; allowed: an integer from %d to %d."
                                % (name, value, low, high))
        value = int(value.strip())
    if value < low or value > high:
        raise SettingsError("%s: %d is out of range; allowed: an integer from %d to %d." % (name, value, low, high))
    return value


def _abs_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SettingsError("%s: a path is required; allowed: an absolute path." % name)
    path = os.path.expanduser(value)
    if not path.startswith("/"):
        raise SettingsError("%s: %r is not absolute; allowed: an absolute path (e.g. /var/lib/kvmsnap)." % (name, value))
    if "/../" in path + "/" or "\x00" in path:
        raise SettingsError("%s: %r contains '..'; allowed: an absolute path without '..'." % (name, value))
    return path.rstrip("/") or "/"


def _restore_as(value: Any, mode: str, vms: Any) -> Optional[str]:
    """kvmsnap_restore_as: '' (restore in place) or a new name / suffix of the allowed form (the names it gives are
    checked with the selected VMs in the restore's pre-flight)."""
    name = "kvmsnap_restore_as"
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SettingsError("%s: %r is not valid; allowed: a new VM name (one VM) or %s." % (name, value, SUFFIX_FORM))
    try:
        if is_suffix(value):
            new_names(value, ["vm"], name)
        else:
            check_name(value, name)
    except RestoreAsError as exc:
        raise SettingsError(str(exc)) from None
    if mode != "files":
        raise SettingsError("%s: a restore as a new VM restores single files; allowed only with "
                            "kvmsnap_restore_mode=files." % name)
    if not is_suffix(value) and (vms == "all" or (isinstance(vms, list) and len(vms) > 1)):
        raise SettingsError("%s: %r is one name, but kvmsnap_restore_vms selects %s; give a suffix (e.g. -copy) "
                            "for several VMs, or select one VM." % (
                                name, value, "all VMs" if vms == "all" else "%d VMs" % len(vms)))
    return value


def vm_list(name: str, value: Any, allow_all: bool = False) -> Any:
    """A list of VM names/UUIDs, or a comma string (Snap Creator form); 'all' when ALLOW_ALL."""
    if value is None:
        return []
    if isinstance(value, str):
        if allow_all and value.strip().lower() == "all":
            return "all"
        text = value.strip()
        items = [] if not text else [p.strip() for p in text.rstrip(",").split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise SettingsError("%s: %r is not valid; allowed: a list of VM names or UUIDs%s." % (
            name, value, " or 'all'" if allow_all else ""))
    out: List[str] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, str) or not item.strip():
            raise SettingsError("%s: entry %d (%r) is empty or not a string; allowed: VM names or UUIDs." % (
                name, index, item))
        if item in out:
            raise SettingsError("%s: entry %d repeats VM %r." % (name, index, item))
        out.append(item)
    return out


def _datastores(value: Any, controllers: Mapping[str, Any]) -> List[Dict[str, str]]:
    name = "kvmsnap_datastores"
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise SettingsError("%s: allowed: a list of {path, controller, svm, volume} entries." % name)
    out: List[Dict[str, str]] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(value, start=1):
        where = "%s entry %d" % (name, index)
        if not isinstance(entry, Mapping):
            raise SettingsError("%s: %r is not a mapping; allowed: {path, controller, svm, volume}." % (where, entry))
        unknown = sorted(set(entry) - {"path", "controller", "svm", "volume", "path_in_volume"})
        if unknown:
            raise SettingsError("%s: unknown key(s) %s; allowed keys: path, controller, svm, volume, path_in_volume." % (
                where, ", ".join(unknown)))
        missing = [k for k in ("path", "controller", "svm", "volume") if not entry.get(k)]
        if missing:
            raise SettingsError("%s: missing %s; allowed: {path: /mount/of/the/volume, controller: <host of group "
                                "ontap_controllers>, svm: <svm>, volume: <volume>}." % (where, ", ".join(missing)))
        path = _abs_path(where + ".path", entry["path"])
        ctrl = str(entry["controller"])
        if ctrl not in controllers:
            raise SettingsError("%s: controller %r is not a host of the inventory group ontap_controllers (known: %s)."
                                % (where, ctrl, ", ".join(sorted(controllers)) or "none"))
        for key in ("svm", "volume"):
            if not _OBJ_RE.match(str(entry[key])):
                raise SettingsError("%s.%s: %r is not a valid ONTAP name; allowed: letters, digits, '_', '.', '-', "
                                    "starting with a letter or '_'." % (where, key, entry[key]))
        if path in seen:
            raise SettingsError("%s: path %s is already entry %d." % (where, path, seen[path]))
        seen[path] = index
        record = {"path": path, "controller": ctrl, "svm": str(entry["svm"]), "volume": str(entry["volume"])}
        if entry.get("path_in_volume"):  # else vm_info finds it in the mount table, or the volume root
            offset = _abs_path(where + ".path_in_volume", entry["path_in_volume"])
            if ".." in offset.split("/"):
                raise SettingsError("%s.path_in_volume: %r has a '..' component; allowed: the datastore directory's "
                                    "path inside the volume, e.g. /images." % (where, entry["path_in_volume"]))
            record["path_in_volume"] = _ds_paths.clean(offset)
        out.append(record)
    keys = ["%s:%s:%s" % (d["controller"], d["svm"], d["volume"]) for d in out]
    for key in set(keys):
        if keys.count(key) > 1:
            raise SettingsError("%s: volume %s is listed under two paths; one path per volume." % (name, key))
    return out


def _no_userinfo(text: Any) -> str:
    """repr(TEXT) without any 'user:password@' part (with or without a scheme)."""
    if isinstance(text, str) and "@" in text:
        text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/]*@", r"\1********@", text)
    return redact(repr(text))


def check_controller(name: str, hv: Mapping[str, Any], env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Connection host vars of one ontap_controllers host → what the roles need (never the secret itself).

    ENV (default os.environ) is where a credential's default account and accounts file are found."""
    where = "inventory host %s (group ontap_controllers)" % name
    hostname = hv.get("ontap_hostname") or name
    if not isinstance(hostname, str) or "://" in hostname or "/" in hostname or any(c.isspace() for c in hostname) \
            or not _HOST_RE.match(hostname):
        # redact: a URL typed here may carry user:password@
        raise SettingsError("%s: ontap_hostname %s is not valid; allowed: a host name or IP address, no scheme, port "
                            "or path (e.g. cluster1.example.com)." % (where, _no_userinfo(hostname)))
    port = hv.get("ontap_port")
    if port not in (None, ""):
        port = _int("%s: ontap_port" % where, port, 1, 65535)
    else:
        port = None
    transport = hv.get("ontap_transport") or "rest"
    if transport not in TRANSPORTS:
        raise SettingsError("%s: ontap_transport %r is not valid; allowed: rest, zapi or auto." % (where, transport))
    validate = _bool("%s: ontap_validate_certs" % where, hv.get("ontap_validate_certs", True))
    files = {var: _controller_file(where, var, hv.get(var)) for var in CONTROLLER_FILES}
    username = hv.get("ontap_username")
    if username not in (None, "") and not isinstance(username, str):
        raise SettingsError("%s: ontap_username %r is not a string; allowed: an ONTAP user name." % (where, username))
    if files["ontap_cert_file"] and hv.get("has_password"):
        raise SettingsError("%s: ontap_password and ontap_cert_file are both set; use one way to log in (unset "
                            "ontap_password for certificate login, or ontap_cert_file/ontap_key_file for a "
                            "password)." % where)
    if bool(files["ontap_cert_file"]) != bool(files["ontap_key_file"]):
        raise SettingsError("%s: %s is set without %s; certificate login needs both (the client certificate and its "
                            "private key)." % ((where,) + (("ontap_cert_file", "ontap_key_file") if files[
                                "ontap_cert_file"] else ("ontap_key_file", "ontap_cert_file"))))
    login = controller_login(name, hv, os.environ if env is None else env)
    addresses = hv.get("ontap_data_addresses")
    if addresses not in (None, "", []):
        if not isinstance(addresses, list) or not all(isinstance(a, str) and _HOST_RE.match(a) for a in addresses):
            raise SettingsError("%s: ontap_data_addresses %s is not valid; allowed: a list of the NFS data LIF "
                                "addresses (IP addresses or host names) of the controller, e.g. [10.0.0.10]."
                                % (where, redact(repr(addresses))))
    return {"name": name, "hostname": hostname, "port": port, "transport": transport, "validate_certs": validate,
            "ca_path": files["ontap_ca_path"], "login": login["source"]}


# controller host vars naming files the ONTAP modules read on the Ansible controller (pre-flight, snapshots)
CONTROLLER_FILES = ("ontap_ca_path", "ontap_cert_file", "ontap_key_file")
_FILE_WHAT = {"ontap_ca_path": "the CA bundle (PEM) that signed the cluster's certificate",
              "ontap_cert_file": "the client certificate (PEM) of the ONTAP user",
              "ontap_key_file": "the private key (PEM) of ontap_cert_file"}


def _controller_file(where: str, var: str, value: Any) -> Optional[str]:
    """An absolute path of a file that exists on the controller, or None when unset; the error names VAR."""
    if value in (None, ""):
        return None
    path = _abs_path("%s: %s" % (where, var), value)
    if not os.path.isfile(path):
        raise SettingsError("%s: %s %s does not exist or is not a file on the Ansible controller; set it to %s "
                            "(the KVM hosts need the same file at the same path for the backup fence)."
                            % (where, var, path, _FILE_WHAT[var]))
    return path


# The ONTAP login of a controller that has none in its host vars: what an AWX/AAP credential of the type
# playbooks/files/awx/credential_type.yml injects (docs/awx.md), or any other environment gives.
ENV_USERNAME = "KVMSNAP_ONTAP_USERNAME"
ENV_PASSWORD = "KVMSNAP_ONTAP_PASSWORD"
ENV_ACCOUNTS = "KVMSNAP_ONTAP_ACCOUNTS_FILE"
_ACCOUNT_KEYS = ("username", "password")
_SHOWN_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _ways(name: str) -> str:
    return ("give it one of: the host vars ontap_username and ontap_password (from vault), the host vars "
            "ontap_cert_file and ontap_key_file, an entry %s in the accounts file named by %s (the AWX credential's "
            "per-controller accounts), or the default account %s and %s (the AWX credential's username and "
            "password); docs/awx.md" % (name, ENV_ACCOUNTS, ENV_USERNAME, ENV_PASSWORD))


def _shown(key: Any) -> str:
    """A key of the accounts file as it may appear in a message: a name-like key, else nothing of it."""
    return repr(key) if isinstance(key, str) and _SHOWN_KEY_RE.match(key) else "(a key not shown)"


def read_accounts(env: Mapping[str, str]) -> Dict[str, Dict[str, str]]:
    """The per-controller accounts of the file named by KVMSNAP_ONTAP_ACCOUNTS_FILE ({} when unset or empty).

    The file is YAML (or JSON): {controller inventory name: {username: ..., password: ...}}. It holds passwords:
    no message shows any of its values, only the controller names and key names."""
    path = env.get(ENV_ACCOUNTS)
    if not path:
        return {}
    where = "%s %s" % (ENV_ACCOUNTS, path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeError) as exc:
        raise SettingsError("%s: cannot be read (%s); it must name the accounts file on the Ansible controller (the "
                            "AWX credential injects it)." % (where, getattr(exc, "strerror", None) or
                                                             type(exc).__name__)) from None
    if not text.strip():
        return {}
    import yaml  # controller side: PyYAML comes with ansible-core

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = " (line %d)" % (mark.line + 1) if mark is not None else ""
        # the parser's message quotes the text, which holds passwords: only the line
        raise SettingsError("%s: not valid YAML%s; allowed: a mapping of controller inventory name to "
                            "{username: ..., password: ...} (content not shown)." % (where, line)) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SettingsError("%s: not a mapping; allowed: a mapping of controller inventory name to "
                            "{username: ..., password: ...} (content not shown)." % where)
    out: Dict[str, Dict[str, str]] = {}
    for ctrl, entry in data.items():
        entry_where = "%s: entry %s" % (where, _shown(ctrl))
        if not isinstance(ctrl, str) or not _SHOWN_KEY_RE.match(ctrl):
            raise SettingsError("%s: not an inventory host name; the keys are the inventory names of the "
                                "ontap_controllers hosts." % entry_where)
        if not isinstance(entry, Mapping):
            raise SettingsError("%s: not a mapping; allowed: {username: ..., password: ...}." % entry_where)
        unknown = [_shown(k) for k in entry if k not in _ACCOUNT_KEYS]
        if unknown:
            raise SettingsError("%s: unknown key(s) %s; allowed keys: username, password." % (
                entry_where, ", ".join(sorted(unknown))))
        for key in _ACCOUNT_KEYS:
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise SettingsError("%s: %s is missing or not a string; each account needs a username and a "
                                    "password." % (entry_where, key))
        out[ctrl] = {"username": entry["username"], "password": entry["password"]}
    return out


def controller_login(name: str, hv: Mapping[str, Any], env: Mapping[str, str]) -> Dict[str, Any]:
    """The ONTAP login of controller NAME: {source, username, password} (contains secrets: never print it).

    The first that gives a login, per controller: its host vars (ontap_username + ontap_password, or
    ontap_cert_file for certificate login: then no username/password), the entry NAME of the accounts file
    (KVMSNAP_ONTAP_ACCOUNTS_FILE), the default account (KVMSNAP_ONTAP_USERNAME + KVMSNAP_ONTAP_PASSWORD).
    `source` names which, without any secret. HV may carry `has_password` instead of ontap_password."""
    where = "inventory host %s (group ontap_controllers)" % name
    if hv.get("ontap_cert_file"):
        return {"source": "host vars (certificate)", "username": None, "password": None}
    if hv.get("ontap_username"):
        return {"source": "host vars", "username": hv["ontap_username"], "password": hv.get("ontap_password")}
    accounts = read_accounts(env)
    if name in accounts:
        return {"source": "accounts file (%s)" % ENV_ACCOUNTS, **accounts[name]}
    username = env.get(ENV_USERNAME)
    if username:
        if not env.get(ENV_PASSWORD):
            raise SettingsError("%s: the default account %s is set without %s; %s." % (
                where, ENV_USERNAME, ENV_PASSWORD, _ways(name)))
        return {"source": "default account (%s)" % ENV_USERNAME, "username": username,
                "password": env[ENV_PASSWORD]}
    raise SettingsError("%s: no ONTAP login; %s." % (where, _ways(name)))


def snapshot_spec(name: str, snap: Any) -> Dict[str, Any]:
    """A snapshot choice (kvmsnap_restore_snapshot, kvmsnap_verify_snapshot): {kind, value}; kind latest,
    latest_verified, name or query."""
    if not isinstance(snap, str) or not snap.strip():
        raise SettingsError("%s: allowed: a snapshot name, 'latest', 'latest_verified', or a JMESPath query over "
                            "the backup catalog (e.g. \"[?policy=='weekly'] | [-1]\")." % name)
    snap = snap.strip()
    if snap in ("latest", "latest_verified"):
        return {"kind": snap, "value": snap}
    if re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", snap):
        try:
            validate_snapshot_name(snap, name)
        except SnapshotNameError as exc:
            raise SettingsError(str(exc)) from None
        return {"kind": "name", "value": snap}
    try:
        import jmespath  # controller side; jmespath is a dependency of the collection's EE
        jmespath.compile(snap)
    except ImportError:
        raise SettingsError("%s: a JMESPath query needs the Python library jmespath on the controller." % name) from None
    except Exception as exc:  # jmespath.exceptions.ParseError and friends
        raise SettingsError("%s: %r is neither a snapshot name nor a valid JMESPath query: %s" % (name, snap, exc)
                            ) from None
    return {"kind": "query", "value": snap}


def _verify_settings(s: Dict[str, Any], values: Mapping[str, Any]) -> None:
    """The kvmsnap_verify_* variables (kvmsnap.core.verify)."""
    s["verify_vms"] = vm_list("kvmsnap_verify_vms", _value(values, "kvmsnap_verify_vms"), allow_all=True) or "all"
    s["verify_snapshot"] = snapshot_spec("kvmsnap_verify_snapshot", _value(values, "kvmsnap_verify_snapshot"))
    s["verify_snapshot"]["allow_crash"] = False
    command = _value(values, "kvmsnap_verify_command")
    if command in (None, "", []):
        s["verify_command"] = []
    elif isinstance(command, str):
        s["verify_command"] = ["/bin/sh", "-c", command]
    elif isinstance(command, list) and command and all(isinstance(c, str) for c in command) and command[0].strip():
        s["verify_command"] = list(command)
    else:
        raise SettingsError("kvmsnap_verify_command: allowed: a shell command line (run with /bin/sh -c in the "
                            "guest) or a list [program, arg, ...]; empty runs no check.")
    s["verify_parallel"] = _int("kvmsnap_verify_parallel", _value(values, "kvmsnap_verify_parallel"), 1, 64)
    network = _value(values, "kvmsnap_verify_network") or None
    if network is not None and (not isinstance(network, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", network)):
        raise SettingsError("kvmsnap_verify_network: %r; allowed: the name of an isolated libvirt network "
                            "([A-Za-z0-9_.-], no <forward>), or empty for no network." % (network,))
    s["verify_network"] = network
    s["verify_dir"] = _abs_path("kvmsnap_verify_dir", _value(values, "kvmsnap_verify_dir"))
    if s["verify_dir"] == "/":
        raise SettingsError("kvmsnap_verify_dir: / is not allowed; allowed: a local directory such as "
                            "/var/lib/kvmsnap-verify.")
    s["verify_timeout"] = _int("kvmsnap_verify_timeout", _value(values, "kvmsnap_verify_timeout"), 1, 86400)
    marker = _value(values, "kvmsnap_verify_boot_marker") or None
    if marker is not None:
        try:
            re.compile(str(marker))
        except re.error as exc:
            raise SettingsError("kvmsnap_verify_boot_marker: %r is not a regular expression: %s." % (marker, exc)
                                ) from None
    s["verify_boot_marker"] = marker
    s["verify_memory_reserve"] = _int("kvmsnap_verify_memory_reserve",
                                      _value(values, "kvmsnap_verify_memory_reserve"), 0, 1048576)
    s["verify_mark"] = _bool("kvmsnap_verify_mark", _value(values, "kvmsnap_verify_mark"))


def resolve(raw: Mapping[str, Any], defaults: Mapping[str, Any], operation: str,
            controllers: Mapping[str, Mapping[str, Any]], snapcreator_text: Optional[str] = None,
            snapcreator_path: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Check every variable; return the settings dict (see the module docstring). ENV: check_controller's."""
    values = dict(raw)
    sc_info: Dict[str, Any] = {"file": snapcreator_path or None, "from_file": [], "overridden": [], "ignored": [],
                               "notes": []}
    if snapcreator_text is not None:
        try:
            parsed = parse_config(snapcreator_text)
        except SnapCreatorConfigError as exc:
            # the parser's messages carry no value (see _snapcreator_config); add only the file's path
            raise SettingsError("kvmsnap_snapcreator_config %s: %s" % (snapcreator_path, exc)) from None
        merged = merge_settings(values, dict(defaults), parsed["vars"], parsed["sources"])
        values.update(merged["vars"])
        sc_info.update(from_file=merged["from_file"], overridden=merged["overridden"], ignored=parsed["ignored"],
                       notes=parsed["notes"], sources=parsed["sources"])
    try:
        return _resolve(values, operation, controllers, sc_info, os.environ if env is None else env)
    except SettingsError as exc:
        raise _from_file(exc, values, sc_info, snapcreator_path) from None


def _from_file(exc: SettingsError, values: Mapping[str, Any], sc_info: Mapping[str, Any],
               path: Optional[str]) -> SettingsError:
    """An error about a variable the Snap Creator file set: name the key and line, and show none of its text.

    The file may hold a password typed into the wrong key; the play output must not carry it.
    """
    message = str(exc)
    var = message.split(":", 1)[0].split(" ", 1)[0]
    if var not in sc_info.get("from_file", []):
        return exc
    value = values.get(var)
    texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list) else []
    for text in sorted(texts, key=len, reverse=True):
        if text.strip():
            message = message.replace(repr(text), "(value not shown)").replace(text, "(value not shown)")
    source = sc_info.get("sources", {}).get(var, "")
    return SettingsError("%s [set by kvmsnap_snapcreator_config %s: %s]" % (message, path, source))


def _resolve(values: Dict[str, Any], operation: str, controllers: Mapping[str, Mapping[str, Any]],
             sc_info: Dict[str, Any], env: Mapping[str, str]) -> Dict[str, Any]:
    ctrl = {}
    for name, hv in controllers.items():
        ctrl[name] = hv
    s: Dict[str, Any] = {"operation": operation, "snapcreator": sc_info, "warnings": []}
    uri = _value_or_default(values, "kvmsnap_libvirt_uri")
    if not isinstance(uri, str) or "://" not in uri:
        raise SettingsError("kvmsnap_libvirt_uri: %s is not a libvirt URI; allowed: e.g. qemu:///system."
                            % redact(repr(uri)))
    if re.match(r"^[^:/]+://[^/@]*:[^/@]*@", uri):
        # the URI is shown in the settings and reports: a password in it would be echoed everywhere
        raise SettingsError("kvmsnap_libvirt_uri: carries a password (user:password@); allowed: a URI without one "
                            "(qemu+ssh://user@host/system with an SSH key, or qemu+tls://host/system).")
    if uri.startswith("qemu+tcp://"):
        raise SettingsError("kvmsnap_libvirt_uri: %s is unauthenticated qemu+tcp; allowed: qemu:///system, qemu+ssh:// "
                            "or qemu+tls://." % redact(uri))
    s["uri"] = uri
    s["vms"] = vm_list("kvmsnap_vms", values.get("kvmsnap_vms"))
    s["datastores"] = _datastores(values.get("kvmsnap_datastores"), ctrl)
    mapping = values.get("kvmsnap_vm_mapping")
    if mapping in (None, "", []):
        mapping = None
    elif not isinstance(mapping, (str, list)):
        raise SettingsError("kvmsnap_vm_mapping: allowed: the Snap Creator string 'vm:controller:path;…' or a list of "
                            "{vm, controller, path} entries.")
    if mapping is not None:
        try:
            parse_vm_mapping(mapping)
        except VmMappingError as exc:  # the module option is vm_mapping; the user set kvmsnap_vm_mapping
            text = str(exc)
            raise SettingsError("kvmsnap_%s" % text if text.startswith("vm_mapping") else
                                "kvmsnap_vm_mapping: %s" % text) from None
    s["vm_mapping"] = mapping
    s["config_dir"] = _abs_path("kvmsnap_config_dir", _value_or_default(values, "kvmsnap_config_dir"))
    s["retries"] = _int("kvmsnap_retries", _value(values, "kvmsnap_retries"), 0, 10)
    s["timeout"] = _int("kvmsnap_timeout", _value(values, "kvmsnap_timeout"), 1, 86400)
    s["agent_timeout"] = _int("kvmsnap_agent_timeout", _value(values, "kvmsnap_agent_timeout"), 1, 600)
    s["quiesce_deadline"] = _int("kvmsnap_quiesce_deadline", _value(values, "kvmsnap_quiesce_deadline"), 10, 86400)
    s["state_dir"] = _abs_path("kvmsnap_state_dir", _value_or_default(values, "kvmsnap_state_dir"))
    s["report_dir"] = _abs_path("kvmsnap_report_dir", _value_or_default(values, "kvmsnap_report_dir"))
    # the key itself never enters the settings (they are facts, shown at -v); only where its file is
    s["manifest_key_file"] = _abs_path("kvmsnap_manifest_key_file", _value_or_default(values, "kvmsnap_manifest_key_file"))
    mode = _value(values, "kvmsnap_quiesce_mode")
    if mode not in QUIESCE_MODES:
        raise SettingsError("kvmsnap_quiesce_mode: %r is not valid; allowed: %s." % (mode, ", ".join(QUIESCE_MODES)))
    s["quiesce_mode"] = mode
    fence = _value(values, "kvmsnap_fence")
    if fence not in FENCES:
        raise SettingsError("kvmsnap_fence: %r is not valid; allowed: %s." % (fence, ", ".join(FENCES)))
    s["fence"] = fence
    s["allow_crash_consistent"] = _bool("kvmsnap_allow_crash_consistent",
                                        _value(values, "kvmsnap_allow_crash_consistent"))
    try:
        s["policy"] = validate_policy(_value(values, "kvmsnap_policy"), "kvmsnap_policy")
        s["snapshot_prefix"] = validate_prefix(_value_or_default(values, "kvmsnap_snapshot_prefix"),
                                               "kvmsnap_snapshot_prefix")
        snapshot_name = values.get("kvmsnap_snapshot_name") or None
        s["snapshot_name"] = validate_snapshot_name(snapshot_name, "kvmsnap_snapshot_name") if snapshot_name else None
    except SnapshotNameError as exc:
        raise SettingsError(str(exc)) from None
    retention = values.get("kvmsnap_retention")
    if retention in (None, "", {}):
        s["retention"] = {}
    else:
        try:
            s["retention"] = parse_retention(retention)
        except RetentionError as exc:
            text = str(exc)
            raise SettingsError("kvmsnap_%s" % text if text.startswith("vm_mapping") else
                                "kvmsnap_vm_mapping: %s" % text) from None
    s["keep"] = s["retention"].get(s["policy"])
    if operation == "backup" and s["keep"] is None:
        s["warnings"].append("kvmsnap_retention has no count for policy %r: snapshots of this policy are never "
                             "pruned." % s["policy"])
    s["snapmirror_update"] = _bool("kvmsnap_snapmirror_update", _value(values, "kvmsnap_snapmirror_update"))
    s["snapvault_update"] = _bool("kvmsnap_snapvault_update", _value(values, "kvmsnap_snapvault_update"))
    label = values.get("kvmsnap_snapmirror_label") or s["policy"]
    if not isinstance(label, str) or not re.match(r"^[A-Za-z0-9_.-]{1,31}$", label):
        raise SettingsError("kvmsnap_snapmirror_label: %r is not valid; allowed: 1-31 characters from "
                            "[A-Za-z0-9_.-]." % (label,))
    s["snapmirror_label"] = label
    # restore
    s["restore_vms"] = vm_list("kvmsnap_restore_vms", values.get("kvmsnap_restore_vms"), allow_all=True)
    s["restore_snapshot"] = snapshot_spec("kvmsnap_restore_snapshot", _value(values, "kvmsnap_restore_snapshot"))
    # a restore from a snapshot that is not a good backup: only when named explicitly (never latest/query)
    s["restore_allow_crash"] = _bool("kvmsnap_restore_allow_crash", _value(values, "kvmsnap_restore_allow_crash"))
    s["restore_snapshot"]["allow_crash"] = s["restore_allow_crash"] and s["restore_snapshot"]["kind"] == "name"
    rmode = _value(values, "kvmsnap_restore_mode")
    if rmode not in RESTORE_MODES:
        raise SettingsError("kvmsnap_restore_mode: %r is not valid; allowed: files or volume." % (rmode,))
    s["restore_mode"] = rmode
    s["restore_force"] = _bool("kvmsnap_restore_force", _value(values, "kvmsnap_restore_force"))
    s["restore_volume_override"] = _bool("kvmsnap_restore_volume_override",
                                         _value(values, "kvmsnap_restore_volume_override"))
    s["restore_safety_snapshot"] = _bool("kvmsnap_restore_safety_snapshot",
                                         _value(values, "kvmsnap_restore_safety_snapshot"))
    s["prerestore_keep"] = _int("kvmsnap_prerestore_keep", _value(values, "kvmsnap_prerestore_keep"), 0, 1023)
    s["catalog_keep_days"] = _int("kvmsnap_catalog_keep_days", _value(values, "kvmsnap_catalog_keep_days"), 0, 36500)
    s["restore_boot_dirs"] = [_abs_path("kvmsnap_restore_boot_dirs", d)
                              for d in (values.get("kvmsnap_restore_boot_dirs") or [])]
    s["restore_unsigned_ok"] = vm_list("kvmsnap_restore_unsigned_ok", values.get("kvmsnap_restore_unsigned_ok"))
    s["restore_as"] = _restore_as(_value(values, "kvmsnap_restore_as"), s["restore_mode"], s["restore_vms"])
    s["restore_start"] = _bool("kvmsnap_restore_start", _value(values, "kvmsnap_restore_start"))
    # the monitoring check (kvmsnap.core.check_backups)
    s["check_max_age_hours"] = _int("kvmsnap_check_max_age_hours", _value(values, "kvmsnap_check_max_age_hours"), 0,
                                    8760)
    report = values.get("kvmsnap_check_report") or None
    s["check_report"] = _abs_path("kvmsnap_check_report", report) if report else None
    s["shutdown_timeout"] = _int("kvmsnap_shutdown_timeout", _value(values, "kvmsnap_shutdown_timeout"), 1, 3600)
    _verify_settings(s, values)
    if operation == "restore" and s["restore_vms"] == []:
        raise SettingsError("kvmsnap_restore_vms: no VM selected; allowed: a list of VM names (or a comma string "
                            "VM1,VM2, as Snap Creator's KVM_RESTORE_VM_LIST) or 'all' for every VM in the snapshot's "
                            "manifests.")
    used = {d["controller"] for d in s["datastores"]} or set(ctrl)
    s["controllers"] = {name: check_controller(name, ctrl[name], env) for name in sorted(used)}
    for name in sorted(set(read_accounts(env)) - set(ctrl)):
        s["warnings"].append("%s names %s, which is not a host of the inventory group ontap_controllers: that "
                             "account is not used." % (ENV_ACCOUNTS, name))
    if operation in ("backup", "restore", "check", "verify") and not s["controllers"]:
        raise SettingsError("no ONTAP controller: add the controllers as hosts of the inventory group "
                            "ontap_controllers (with ontap_hostname, and the login as host vars or from a "
                            "credential: docs/awx.md).")
    if sc_info["file"]:
        for item in sc_info["ignored"]:
            s["warnings"].append("Snap Creator %s (line %d) ignored: %s" % (item["key"], item["line"], item["reason"]))
        for item in sc_info["overridden"]:
            s["warnings"].append("Snap Creator %s not used: %s is set explicitly" % (item["source"], item["var"]))
    return s
