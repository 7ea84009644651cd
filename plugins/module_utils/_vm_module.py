# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The common run loop of the vm_* modules: argument spec, libvirt-python, option ranges, run, exit/fail.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import out_of_range
from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_module import ontap_module


def run_vm_module(argument_spec: Dict[str, Any], run: Callable[[AnsibleModule], Dict[str, Any]],
                  limits: Iterable[str] = (), ontap: bool = False, **module_kwargs: Any) -> None:
    """Build the module (with the ONTAP connection options when ONTAP), check libvirt-python and the options in
    LIMITS (_defaults.LIMITS), and exit with RUN(module)'s result.

    A KvmsnapError fails the task with its message and its partial result; the ``warnings`` of the result become
    Ansible warnings. Check mode is supported."""
    if ontap:
        module = ontap_module(argument_spec, **module_kwargs)
    else:
        module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    problem = out_of_range(module.params, limits)
    if problem:
        module.fail_json(msg=problem)
    try:
        result = run(module)
    except KvmsnapError as err:
        partial = dict(err.result)
        partial.pop("msg", None)
        _warn(module, partial.pop("warnings", None))
        module.fail_json(msg=str(err), **partial)
    _warn(module, result.pop("warnings", None))
    module.exit_json(**result)


def _warn(module: AnsibleModule, warnings: Any) -> None:
    for warning in warnings or []:
        module.warn(warning)
