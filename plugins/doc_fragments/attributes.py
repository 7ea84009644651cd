# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Shared `attributes` documentation (check_mode, diff_mode, idempotent, action groups)."""

    # Standard documentation fragment
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Should be used together with the standard fragment
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
"""

    # The action group of the ONTAP modules (meta/runtime.yml: action_groups.ontap)
    ACTIONGROUP_ONTAP = r"""
options: {}
attributes:
  action_group:
    description: >-
      Use C(group/kvmsnap.core.ontap) in C(module_defaults) to set the connection options (O(hostname),
      O(username), O(password), ...) once for all ONTAP modules of this collection.
    support: full
    membership:
      - kvmsnap.core.ontap
"""
