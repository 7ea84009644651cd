# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors of the fence: FenceError carries what was done; state_dir_error names an unwritable state_dir.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import socket

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError


class FenceError(KvmsnapError):
    """The fence failed; ``result`` carries what was done (per-VM outcomes, releases)."""


def state_dir_error(state_dir: str, path: str, err: OSError) -> FenceError:
    """A journal/lock write failed (disk full, read-only, ...): name the file and the setting; nothing was quiesced."""
    what = (socket.gethostname(), path, err.strerror or err, state_dir, state_dir)
    return FenceError("%s: cannot write %s (%s) in state_dir %s; nothing was quiesced. Check that %s is writable and "
                      "not full (kvmsnap_state_dir / state_dir)." % what)
