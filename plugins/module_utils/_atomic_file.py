# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Crash-safe file writes for journals, manifests and restored NVRAM (private to kvmsnap.core)."""

from __future__ import annotations

import os
import uuid as _uuid


def fsync_dir(path: str) -> None:
    """Make a rename in PATH durable (a host crash right after it must not lose the file)."""
    try:
        fd = os.open(path or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write DATA to PATH: a new file (O_EXCL, no symlink follow, MODE), fsync, rename over PATH.

    Readers see the old content or the new one, never a torn file.
    """
    tmp = "%s.tmp-%d-%s" % (path, os.getpid(), _uuid.uuid4().hex[:6])
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
        fsync_dir(os.path.dirname(path))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
