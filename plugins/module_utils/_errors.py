# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An error that carries the partial result of the work it interrupted (private to kvmsnap.core)."""

from __future__ import annotations

from typing import Any, Dict, Optional


class ResultError(Exception):
    """Refused or failed; ``result`` holds what was done so far, for the module to return with the failure."""

    def __init__(self, message: str, result: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result or {}

    def __str__(self) -> str:
        return self.message
