# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_backup's vm_mapping option: parsed for its one controller, SVMs resolved once connected.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _vm_mapping
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_errors import FenceError


def parse_vm_mapping(vm_mapping: Any, controller: Optional[str] = None) -> List[Dict[str, Any]]:
    """`vm_mapping` (Snap Creator `VM1:ctrl:/vol/vol1/lun1;…` or a structured list) → the entries of _vm_mapping.

    One form everywhere, `vm:controller:path` as vm_info and Snap Creator's KVM_VM_MAPPING: parsing and its input
    rules live in _vm_mapping. vm_backup talks to one controller (CONTROLLER, its `hostname`): every entry must name
    it. ``svm`` is the structured form's explicit SVM, or None: then the SVM is the one that holds the volume on the
    controller (resolve_mapping_svms, once connected)."""
    if vm_mapping is None or vm_mapping == "" or vm_mapping == []:
        return []
    try:
        entries = _vm_mapping.parse_vm_mapping(vm_mapping)
    except _vm_mapping.VmMappingError as err:
        raise FenceError(str(err)) from None
    out = []
    for entry in entries:
        if not entry.get("volume"):
            raise FenceError("vm_mapping entry %d (%s): path %r is not of the form /vol/<volume>/…; give volume "
                             "explicitly in the structured form." % (entry["index"], entry["vm"], entry["path"]))
        if controller is not None and entry["controller"].lower() != str(controller).lower():
            raise FenceError(
                "vm_mapping entry %d (%s): the controller field is %r, but this task's controller is %s (option "
                "hostname). vm_mapping takes %s, as vm_info and Snap Creator's KVM_VM_MAPPING do; the form "
                "vm:svm:/vol/<volume>/... of earlier releases is no longer accepted. Write %s:%s:%s (the SVM is the one "
                "holding volume %s), or the structured form {vm, controller, path, svm}. Nothing was quiesced."
                % (entry["index"], entry["vm"], entry["controller"], controller, _vm_mapping.FORM, entry["vm"],
                   _vm_mapping.format_controller(str(controller)), entry["path"], entry["volume"]))
        out.append(entry)
    return out


def resolve_mapping_svms(ontap: Any, volumes: List[tuple]) -> List[tuple]:
    """Fill the SVM of (None, volume) pairs (vm_mapping entries without svm) from the controller's volumes."""
    out: List[tuple] = []
    for svm, vol in volumes:
        if svm is None:
            svms = sorted({v.get("svm") for v in ontap.list_volumes(name=vol) if v.get("svm")})
            if len(svms) != 1:
                raise FenceError(
                    "vm_mapping: volume %s %s on ONTAP %s; give the SVM with the structured form {vm, controller, path, "
                    "svm}. Nothing was quiesced." % (vol, "exists in the SVMs %s" % ", ".join(svms) if svms
                                                     else "does not exist", ontap.hostname))
            svm = svms[0]
        if (svm, vol) not in out:
            out.append((svm, vol))
    return out
