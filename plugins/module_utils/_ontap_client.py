# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""connect(): a client of the ONTAP interface (see docs/dev/ontap-interface.md) from a module's options.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

from typing import Any, Dict

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import validate_connection
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import Ontap
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_rest import OntapRest
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_zapi import OntapZapi


def connect(params: Dict[str, Any], module_name: str = "") -> Ontap:
    """Validate the connection options and return a connected client (REST, ZAPI, or auto)."""
    p = validate_connection(params)
    try:
        return _connect(p, module_name)
    except OntapError as exc:
        if exc.is_auth or exc.is_forbidden:
            who = ("certificate %s" % p["cert_file"]) if p.get("cert_file") else ("user %s" % p.get("username"))
            exc.message += " (as %s, transport %s)" % (who, p["transport"])
        raise


def _connect(p: Dict[str, Any], module_name: str) -> Ontap:
    transport = p["transport"]
    if transport == "zapi":
        client: Ontap = OntapZapi(p, module_name)
        client.version()
        return client
    rest = OntapRest(p, module_name)
    if transport == "rest":
        rest.version()
        return rest
    try:
        ver = rest.version()
        if ver[:2] not in ((9, 4), (9, 5)):
            return rest
    except OntapError as exc:
        if exc.is_auth or exc.is_forbidden or (exc.status is None and not exc.is_not_found):
            raise
    client = OntapZapi(p, module_name)
    client.version()
    return client
