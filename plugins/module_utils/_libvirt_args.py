# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument-spec entries shared by the libvirt modules (vm_*).

This module util is PRIVATE to the collection. It may change without notice.

Kept apart from ``_libvirt`` so that libvirt access imports without Ansible: the fence watchdog runs it
after the module has exited, outside AnsiballZ (see ``_watchdog``).
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import DEFAULT_RETRIES
from ansible_collections.kvmsnap.core.plugins.module_utils._libvirt import DEFAULT_URI


def uri_option() -> dict:
    """Argument-spec entry of the vm_* modules' ``uri`` option (one definition for all of them)."""
    return dict(type="str", default=DEFAULT_URI, fallback=(env_fallback, ["LIBVIRT_DEFAULT_URI"]))


def libvirt_argument_spec(**extra: dict) -> dict:
    """A vm_* module's argument spec: ``uri`` and ``retries`` (the kvmsnap.core.libvirt doc fragment) plus EXTRA."""
    spec = dict(uri=uri_option(), retries=dict(type="int", default=DEFAULT_RETRIES))
    spec.update(extra)
    return spec
