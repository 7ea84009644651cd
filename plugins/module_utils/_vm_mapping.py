# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The explicit VM → storage map: Snap Creator's KVM_VM_MAPPING string, or a structured list.

This module util is PRIVATE to the collection. It may change without notice.

String form (Snap Creator): ``VM1:ctrl1:/vol/vol1/lun1;VM2:ctrl2:/vol/vol2/lun2`` — entries
separated by ``;`` (a trailing ``;`` is accepted), each ``vm:controller:path``; an IPv6 controller
must be written in brackets (``VM1:[fe80::1]:/vol/v/l``). Structured form: a list of
``{vm, controller, path, svm (optional), volume (optional)}``. ``parse_vm_mapping(value)``
accepts both and returns a list of dicts ``{index, vm, controller, svm, volume, path}`` (``index``
is 1-based, ``volume`` derived from ``/vol/<volume>/...`` when not given). Every error is a
``VmMappingError`` whose message names the entry, what is wrong and the allowed form.

Refused (Snap Creator does not support them, or they are ambiguous): an empty entry (``;;``),
a missing field, an unbracketed IPv6 controller, separators other than ``;`` and ``:`` (comma,
newline, tab, full-width ``；``/``：``), the same VM twice with different paths, two VMs on
one LUN/path of one controller.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

FORM = "vm:controller:path (e.g. VM1:ctrl1:/vol/vol1/lun1), entries separated by ';'"
_ALLOWED_KEYS = ("vm", "controller", "path", "svm", "volume")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}(%\w+)?$")
_BAD_SEPARATORS = (
    ("\uff1b", "a full-width semicolon '；' (U+FF1B)", "use the ASCII ';' between entries"),
    ("\uff1a", "a full-width colon '：' (U+FF1A)", "use the ASCII ':' between fields"),
    ("\n", "a line break", "put all entries on one line separated by ';' (or use the structured list form)"),
    ("\r", "a carriage return", "put all entries on one line separated by ';'"),
    ("\t", "a tab", "fields are separated by ':' and entries by ';', without tabs"),
    (",", "a comma", "entries are separated by ';', not ',' (Snap Creator form)"),
)
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError


class VmMappingError(KvmsnapError, ValueError):
    """vm_mapping is invalid; the message names the entry, the problem and the allowed form."""


def _volume_of(path: str) -> Optional[str]:
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "vol" and parts[2]:
        return parts[2]
    return None


def _split_entry(entry: str, index: int) -> Dict[str, str]:
    shown = "entry %d (%r)" % (index, entry)
    first = entry.find(":")
    if first < 0:
        raise VmMappingError("vm_mapping %s: missing fields; expected %s." % (shown, FORM))
    vm = entry[:first]
    rest = entry[first + 1:]
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise VmMappingError("vm_mapping %s: '[' without ']' around the controller address; expected "
                                 "vm:[ipv6-address]:path." % shown)
        controller = rest[1:close]
        after = rest[close + 1:]
        if not after.startswith(":"):
            raise VmMappingError("vm_mapping %s: expected ':' after ']' and then the path; expected %s."
                                 % (shown, FORM))
        path = after[1:]
        if not _IPV6_RE.match(controller):
            raise VmMappingError("vm_mapping %s: %r in brackets is not an IPv6 address." % (shown, controller))
    else:
        second = rest.find(":")
        if second < 0:
            raise VmMappingError("vm_mapping %s: missing field; expected %s." % (shown, FORM))
        controller = rest[:second]
        path = rest[second + 1:]
        if ":" in path:
            # an unbracketed IPv6 address splits into more fields than three
            candidate = rest[:rest.rfind(":")]
            if _IPV6_RE.match(candidate) or _IPV6_RE.match(controller + ":"):
                raise VmMappingError("vm_mapping %s: the controller looks like an IPv6 address; write it in "
                                     "brackets (vm:[%s]:path) or use the structured list form."
                                     % (shown, candidate))
            raise VmMappingError("vm_mapping %s: too many ':' separated fields; expected %s." % (shown, FORM))
    fields = {"vm": vm, "controller": controller, "path": path}
    for key in ("vm", "controller", "path"):
        if not fields[key].strip():
            raise VmMappingError("vm_mapping %s: the %s field is empty; expected %s." % (shown, key, FORM))
        if fields[key] != fields[key].strip():
            raise VmMappingError("vm_mapping %s: the %s field has leading or trailing spaces; expected %s."
                                 % (shown, key, FORM))
    return fields


def parse_mapping_string(text: str) -> List[Dict[str, Any]]:
    """Parse the Snap Creator KVM_VM_MAPPING string form."""
    if not isinstance(text, str):
        raise VmMappingError("vm_mapping: expected a string or a list, got %s." % type(text).__name__)
    body = text.strip(" ")
    if body.endswith("\n"):
        body = body.rstrip("\n")
    for sep, what, hint in _BAD_SEPARATORS:
        if sep in body:
            raise VmMappingError("vm_mapping contains %s at position %d: %s; expected %s."
                                 % (what, body.index(sep) + 1, hint, FORM))
    if body == "":
        return []
    pieces = body.split(";")
    if len(pieces) > 1 and pieces[-1].strip() == "":
        pieces = pieces[:-1]  # the documented trailing ';'
    entries = []
    for i, piece in enumerate(pieces, start=1):
        if piece.strip() == "":
            raise VmMappingError("vm_mapping: entry %d is empty (nothing between two ';'); expected %s." % (i, FORM))
        fields = _split_entry(piece, i)
        entries.append({"index": i, "vm": fields["vm"], "controller": fields["controller"], "svm": None,
                        "volume": None, "path": fields["path"]})
    return _finish(entries)


def parse_mapping_list(items: Any) -> List[Dict[str, Any]]:
    """Parse the structured form: a list of {vm, controller, path, svm?, volume?}."""
    if not isinstance(items, list):
        raise VmMappingError("vm_mapping: expected a list of {vm, controller, path, svm, volume}, got %s."
                             % type(items).__name__)
    entries = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise VmMappingError("vm_mapping entry %d: expected a dict {vm, controller, path, svm, volume}, "
                                 "got %s." % (i, type(item).__name__))
        unknown = sorted(set(item) - set(_ALLOWED_KEYS))
        if unknown:
            raise VmMappingError("vm_mapping entry %d: unknown key(s) %s; allowed: %s."
                                 % (i, ", ".join(unknown), ", ".join(_ALLOWED_KEYS)))
        entry: Dict[str, Any] = {"index": i}
        for key in _ALLOWED_KEYS:
            value = item.get(key)
            if value is None or (isinstance(value, str) and value.strip() == ""):
                if key in ("vm", "controller", "path"):
                    raise VmMappingError("vm_mapping entry %d: %s is missing or empty; expected {vm, controller, "
                                         "path, svm (optional), volume (optional)}." % (i, key))
                entry[key] = None
                continue
            if not isinstance(value, str):
                raise VmMappingError("vm_mapping entry %d: %s must be a string, got %s."
                                     % (i, key, type(value).__name__))
            entry[key] = value
        entries.append(entry)
    return _finish(entries)


def _finish(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    by_vm: Dict[str, Dict[str, Any]] = {}
    by_path: Dict[Any, Dict[str, Any]] = {}
    out = []
    for entry in entries:
        path = entry["path"]
        if not path.startswith("/"):
            raise VmMappingError("vm_mapping entry %d (%s): path %r must be absolute, e.g. /vol/vol1/lun1."
                                 % (entry["index"], entry["vm"], path))
        if "/../" in path + "/" or "/./" in path + "/" or "//" in path:
            raise VmMappingError("vm_mapping entry %d (%s): path %r must not contain '..', '.' or '//'."
                                 % (entry["index"], entry["vm"], path))
        if entry.get("volume") is None:
            entry["volume"] = _volume_of(path)
        prev = by_vm.get(entry["vm"])
        if prev is not None:
            if (prev["controller"], prev["path"]) != (entry["controller"], path):
                raise VmMappingError("vm_mapping: VM %r appears twice with different storage (entry %d: %s:%s, "
                                     "entry %d: %s:%s); a VM may be listed once."
                                     % (entry["vm"], prev["index"], prev["controller"], prev["path"],
                                        entry["index"], entry["controller"], path))
            continue  # exact duplicate: harmless
        key = (entry["controller"], path)
        other = by_path.get(key)
        if other is not None:
            raise VmMappingError("vm_mapping: VMs %r (entry %d) and %r (entry %d) are both on %s:%s; several VMs "
                                 "on one LUN cannot be restored one by one (not supported)."
                                 % (other["vm"], other["index"], entry["vm"], entry["index"], entry["controller"],
                                    path))
        by_vm[entry["vm"]] = entry
        by_path[key] = entry
        out.append(entry)
    return out


def parse_vm_mapping(value: Any) -> List[Dict[str, Any]]:
    """vm_mapping option (None, string form or structured list) → list of entries."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_mapping_string(value)
    return parse_mapping_list(value)


def format_controller(controller: str) -> str:
    """The controller field of the string form (an IPv6 address in brackets)."""
    return "[%s]" % controller if ":" in controller else controller


def format_vm_mapping(entries: List[Dict[str, Any]]) -> str:
    """The Snap Creator string form of entries (what discovery can hand back to a user)."""
    return ";".join("%s:%s:%s" % (e["vm"], format_controller(e["controller"]), e["path"]) for e in entries)
