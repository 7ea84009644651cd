# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OntapError: one exception type for REST, ZAPI and transport failures.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import re
from typing import Any, Optional

AUTH_CODES = frozenset(["13002"])
FORBIDDEN_CODES = frozenset(["6", "13003"])
NOT_FOUND_CODES = frozenset(["4", "13040", "13021", "15661", "917927", "5374875", "5374876", "2621462", "15698"])
BUSY_CODES = frozenset(["1638555", "13024", "8", "524486"])
EXISTS_CODES = frozenset(["13020", "13130", "53411921"])
TRANSIENT_CODES = frozenset(["65541", "65552", "65562"])

_SECRET_RE = re.compile(r"(?i)(authorization:\s*basic\s+)[A-Za-z0-9+/=]+|(://)[^/@\s]+:[^/@\s]+@")


def redact(text: str, secrets: Optional[list] = None) -> str:
    """Remove Authorization headers, URL user info and the given secret values from text."""
    text = _SECRET_RE.sub(lambda m: (m.group(1) + "********") if m.group(1) else (m.group(2) + "********@"), text)
    for secret in secrets or []:
        if secret and len(str(secret)) >= 3:
            text = text.replace(str(secret), "********")
    return text


class OntapError(Exception):
    """An ONTAP call failed.

    status: HTTP status (REST or ZAPI transport) or None; code: REST error code digits or ZAPI errno.
    """

    def __init__(self, message: str, status: Optional[int] = None, code: Any = None, target: Optional[str] = None,
                 operation: str = "", hostname: str = "", hint: Optional[str] = None, transient: bool = False):
        self.message = str(message)
        self.status = status
        self.code = None if code is None or code == "" else str(code)
        self.target = target
        self.operation = operation
        self.hostname = hostname
        self._hint = hint
        self.transient = transient
        super().__init__(self.message)

    # ---- kinds -----------------------------------------------------------------------------
    @property
    def is_auth(self) -> bool:
        return self.status == 401 or self.code in AUTH_CODES

    @property
    def is_forbidden(self) -> bool:
        return self.status == 403 or self.code in FORBIDDEN_CODES

    @property
    def is_not_found(self) -> bool:
        return self.status == 404 or self.code in NOT_FOUND_CODES

    @property
    def is_busy(self) -> bool:
        return self.code in BUSY_CODES or "busy" in self.message.lower()

    @property
    def is_exists(self) -> bool:
        if self.code in EXISTS_CODES:
            return True
        return (self.status == 409 and self.code == "1") or "already exists" in self.message.lower()

    @property
    def is_transient(self) -> bool:
        if self.transient or self.code in TRANSIENT_CODES:
            return True
        return "temporarily locked" in self.message.lower()

    @property
    def hint(self) -> str:
        if self._hint:
            return self._hint
        if self.is_auth:
            return "Check username and password (or cert_file/key_file) for this controller."
        if self.is_forbidden:
            return ("The ONTAP role of this user lacks the right to %s; grant it to the role (REST: the API path of "
                    "this call, CLI: the matching command) or use another user." % (self.operation or "do this"))
        if self.is_not_found:
            return "Check that the SVM, volume, snapshot or LUN named here exists on this controller."
        if self.is_busy:
            return "The object is busy (SnapMirror, clone or restore in progress); retry later."
        if self.is_exists:
            return "An object with that name already exists; choose another name or delete it first."
        if self.is_transient:
            return "The controller reported a transient error; retry later or raise 'retries'."
        return ""

    def __str__(self) -> str:
        where = self.hostname or "ONTAP"
        op = self.operation or "request"
        details = []
        if self.code:
            details.append("code %s" % self.code)
        if self.status:
            details.append("HTTP %s" % self.status)
        text = "%s: %s failed: %s" % (where, op, self.message)
        if details:
            text += " (%s)" % ", ".join(details)
        text += "."
        if self.hint:
            text += " " + self.hint
        return text

    def with_context(self, operation: Optional[str] = None, hostname: Optional[str] = None) -> OntapError:
        if operation and not self.operation:
            self.operation = operation
        if hostname and not self.hostname:
            self.hostname = hostname
        return self

    def to_dict(self) -> dict:
        return {"message": self.message, "status": self.status, "code": self.code, "target": self.target,
                "operation": self.operation, "hostname": self.hostname}
