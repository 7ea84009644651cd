# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base class of every error the collection's modules report (private to kvmsnap.core).

A KvmsnapError's message is what the user reads: it names the host, the VM, the volume and what to do next
(docs/dev/CONVENTIONS.md). ``result`` holds the partial result of the work the error interrupted (per-VM outcomes,
releases, restored items), which the module returns with the failure. The modules' run loops catch this one class
(_vm_module.run_vm_module, _ontap_module.run_ontap_module). Option errors also derive from ValueError.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class KvmsnapError(Exception):
    """Refused or failed; ``result`` holds what was done so far, for the module to return with the failure."""

    def __init__(self, message: Any = "", result: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = str(message)
        self.result: Dict[str, Any] = result or {}

    def __str__(self) -> str:
        return self.message
