# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The common run loop of the ontap_* modules: argument spec, validate, connect, run, exit/fail.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import (
    ONTAP_CONNECTION_MUTUALLY_EXCLUSIVE,
    ONTAP_CONNECTION_REQUIRED_TOGETHER,
    OptionError,
    certificate_over_environment,
    connection_argument_spec,
    validate_connection,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import Ontap
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_paths import PathError
from ansible_collections.kvmsnap.core.plugins.module_utils._retention import RetentionError
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import SnapshotNameError

INPUT_ERRORS = (OptionError, PathError, RetentionError, SnapshotNameError)


def ontap_module(argument_spec: Dict[str, Any], **kwargs: Any) -> AnsibleModule:
    """AnsibleModule with the shared connection options merged in; check mode supported."""
    mutually_exclusive = list(ONTAP_CONNECTION_MUTUALLY_EXCLUSIVE) + list(kwargs.pop("mutually_exclusive", []))
    required_together = list(ONTAP_CONNECTION_REQUIRED_TOGETHER) + list(kwargs.pop("required_together", []))
    return AnsibleModule(argument_spec=connection_argument_spec(**argument_spec), supports_check_mode=True,
                         mutually_exclusive=mutually_exclusive, required_together=required_together, **kwargs)


def run_ontap_module(module: AnsibleModule, module_name: str, prepare: Callable[[AnsibleModule], Any],
                     execute: Callable[[AnsibleModule, Any, Any], Dict[str, Any]]) -> None:
    """PREPARE validates the options (no ONTAP call); EXECUTE(module, client, prepared) returns the result."""
    client: Optional[Ontap] = None
    try:
        certificate_over_environment(module.params, os.environ)
        validate_connection(module.params)
        prepared = prepare(module)
        client = connect(module.params, module_name)
        result = execute(module, client, prepared)
    except INPUT_ERRORS as exc:
        module.fail_json(msg=str(exc), changed=False)
    except OntapError as exc:
        _warn(module, client)
        partial = dict(getattr(exc, "result", None) or {})  # what was done before the failure (restore_items)
        partial.setdefault("changed", False)
        module.fail_json(msg=str(exc), error=exc.to_dict(), **partial)
    _warn(module, client)
    for warning in result.pop("warnings", []) or []:
        module.warn(warning)
    if client is not None:
        result.setdefault("transport", client.transport)
        version = client.known_version
        if version:
            result.setdefault("ontap_version", ".".join(str(x) for x in version))
    module.exit_json(**result)


def _warn(module: AnsibleModule, client: Any) -> None:
    if client is None:
        return
    for warning in getattr(client, "warnings", []) or []:
        module.warn(warning)
    client.warnings = []
