# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument-spec fragments and option validation for the ontap_* modules.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import stat
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ansible.module_utils.basic import env_fallback

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import (
    DEFAULT_ONTAP_TIMEOUT,
    DEFAULT_RETRIES,
    out_of_range,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError


def _env(name: str) -> tuple:
    return (env_fallback, ["KVMSNAP_ONTAP_%s" % name.upper()])


ONTAP_CONNECTION_ARGS: Dict[str, Dict[str, Any]] = {
    "hostname": {"type": "str", "required": True, "fallback": _env("hostname")},
    "port": {"type": "int", "fallback": _env("port")},
    "username": {"type": "str", "fallback": _env("username")},
    "password": {"type": "str", "no_log": True, "fallback": _env("password")},
    "cert_file": {"type": "path", "fallback": _env("cert_file")},
    "key_file": {"type": "path", "no_log": False, "fallback": _env("key_file")},
    "validate_certs": {"type": "bool", "default": True, "fallback": _env("validate_certs")},
    "ca_path": {"type": "path", "fallback": _env("ca_path")},
    "transport": {"type": "str", "default": "rest", "choices": ["rest", "zapi", "auto"],
                  "fallback": _env("transport")},
    "timeout": {"type": "int", "default": DEFAULT_ONTAP_TIMEOUT, "fallback": _env("timeout")},
    "retries": {"type": "int", "default": DEFAULT_RETRIES, "fallback": _env("retries")},
}

# The connection options as suboptions of an option naming another controller (no environment fallbacks: that
# controller is named in the task).
CONNECTION_SUBOPTIONS: Dict[str, Dict[str, Any]] = {
    option: {k: v for k, v in spec.items() if k != "fallback"} for option, spec in ONTAP_CONNECTION_ARGS.items()}

# password and cert_file exclude each other, but that is checked in validate_connection, after
# certificate_over_environment: AnsibleModule would count a password its env fallback put in (even an empty one).
ONTAP_CONNECTION_MUTUALLY_EXCLUSIVE: List[List[str]] = []
ONTAP_CONNECTION_REQUIRED_TOGETHER: List[List[str]] = [["cert_file", "key_file"]]

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_SVM_VOL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,202}$")


class OptionError(KvmsnapError, ValueError):
    """An option value is invalid; the message names the option and the allowed form."""


def connection_argument_spec(**extra: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A module's argument spec: the connection options plus EXTRA (deep copies, never shared)."""
    spec = copy.deepcopy(ONTAP_CONNECTION_ARGS)
    spec.update(copy.deepcopy(extra))
    return spec


def validate_hostname(hostname: Any) -> str:
    """A host name, IPv4 or IPv6 address (optionally in brackets); no scheme, port, path or whitespace."""
    if not isinstance(hostname, str) or not hostname:
        raise OptionError("hostname: required; give the ONTAP cluster management host name or IP address.")
    if hostname != hostname.strip() or any(c.isspace() for c in hostname):
        raise OptionError("hostname: %r contains whitespace; give only the host name or IP address "
                          "(e.g. cluster1.example.com)." % hostname)
    if "://" in hostname or "/" in hostname:
        raise OptionError("hostname: %r looks like a URL; give only the host name or IP address (no scheme, no "
                          "path; use the port option for the port), e.g. cluster1.example.com." % hostname)
    if "@" in hostname:
        raise OptionError("hostname: %r contains '@'; give credentials with username/password, not in the "
                          "host name." % hostname.split("@")[-1])
    candidate = hostname[1:-1] if hostname.startswith("[") and hostname.endswith("]") else hostname
    try:
        ipaddress.ip_address(candidate)
        return candidate
    except ValueError:
        pass
    if ":" in hostname:
        raise OptionError("hostname: %r contains ':'; give the port with the port option (IPv6 addresses are "
                          "accepted as they are or in brackets)." % hostname)
    if not _HOST_RE.match(hostname) or ".." in hostname:
        raise OptionError("hostname: %r is not a valid host name; allowed: letters, digits, '-' and '.'."
                          % hostname)
    return hostname


def certificate_over_environment(params: Dict[str, Any], env: Mapping[str, str]) -> None:
    """With cert_file, drop a password that is the environment's default (KVMSNAP_ONTAP_PASSWORD, as an AWX/AAP
    credential injects it for the controllers without a login of their own): the task's certificate login wins.
    PARAMS are changed in place."""
    if params.get("cert_file") and params.get("password") is not None and \
            params["password"] == env.get("KVMSNAP_ONTAP_PASSWORD"):
        params["password"] = None


def validate_connection(params: Dict[str, Any]) -> Dict[str, Any]:
    """Check and normalise the connection options; returns a new dict. Raises OptionError."""
    p = dict(params)
    p["hostname"] = validate_hostname(p.get("hostname"))
    port: Any = p.get("port")
    if port is not None and not (1 <= int(port) <= 65535):
        raise OptionError("port: %r is out of range; expected 1-65535." % port)
    timeout: Any = p.get("timeout")
    retries: Any = p.get("retries")
    p["timeout"] = int(timeout if timeout is not None else DEFAULT_ONTAP_TIMEOUT)
    p["retries"] = int(retries if retries is not None else DEFAULT_RETRIES)
    problem = out_of_range(p, ("timeout", "retries"))
    if problem:
        raise OptionError(problem)
    transport = p.get("transport") or "rest"
    if transport not in ("rest", "zapi", "auto"):
        raise OptionError("transport: %r is not one of rest, zapi, auto." % transport)
    p["transport"] = transport
    if p.get("validate_certs") is None:
        p["validate_certs"] = True
    if p.get("password") and p.get("cert_file"):
        raise OptionError("password and cert_file are mutually exclusive; use one authentication method.")
    if bool(p.get("cert_file")) != bool(p.get("key_file")):
        raise OptionError("cert_file and key_file must be given together.")
    if not p.get("cert_file") and not p.get("username"):
        raise OptionError("username: required with password authentication (or give cert_file and key_file).")
    for opt in ("cert_file", "key_file", "ca_path"):
        path = p.get(opt)
        if path and not os.path.isfile(path):
            raise OptionError("%s: %s does not exist or is not a file." % (opt, path))
    key = p.get("key_file")
    if key:
        mode = os.stat(key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise OptionError("key_file: %s is readable by group or others (mode %s); run chmod 600 on it."
                              % (key, oct(mode & 0o777)))
    return p


def validate_object_name(value: Any, field: str, kind: str = "volume") -> str:
    if not isinstance(value, str) or not _SVM_VOL_RE.match(value):
        raise OptionError("%s: invalid %s name %r; allowed: letters, digits, '_', '.', '-', starting with a letter "
                          "or '_'." % (field, kind, value))
    return value


def parse_volumes(volumes: Any, svm: Optional[str], field: str = "volumes") -> List[Tuple[str, str]]:
    """`volumes` entries are `vol` (with the `svm` option) or `svm:vol` → [(svm, vol)], order kept, no dups."""
    if not isinstance(volumes, list) or not volumes:
        raise OptionError("%s: give at least one volume (name with the svm option, or 'svm:volume')." % field)
    if svm is not None:
        validate_object_name(svm, "svm", "SVM")
    result: List[Tuple[str, str]] = []
    for index, entry in enumerate(volumes, start=1):
        if not isinstance(entry, str) or not entry.strip():
            raise OptionError("%s: entry %d is empty; expected 'volume' or 'svm:volume'." % (field, index))
        entry = entry.strip()
        if ":" in entry:
            owner, _sep, vol = entry.partition(":")
            if not owner or not vol or ":" in vol:
                raise OptionError("%s: entry %d (%r) is not 'svm:volume'." % (field, index, entry))
        else:
            if svm is None:
                raise OptionError("%s: entry %d (%r) has no SVM; set the svm option or write 'svm:volume'."
                                  % (field, index, entry))
            owner, vol = svm, entry
        validate_object_name(owner, "%s entry %d" % (field, index), "SVM")
        validate_object_name(vol, "%s entry %d" % (field, index), "volume")
        pair = (owner, vol)
        if pair in result:
            raise OptionError("%s: entry %d (%s:%s) is given twice." % (field, index, owner, vol))
        result.append(pair)
    return result
