# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""OntapError: one exception type for REST, ZAPI and transport failures.

This module util is PRIVATE to the collection. It may change without notice.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils._errors import KvmsnapError

AUTH_CODES = frozenset(["13002"])
FORBIDDEN_CODES = frozenset(["6", "13003"])
NOT_FOUND_CODES = frozenset(["4", "13040", "13021", "15661", "917927", "5374875", "5374876", "2621462", "15698"])
BUSY_CODES = frozenset(["1638555", "13024", "8", "524486"])
EXISTS_CODES = frozenset(["13020", "13130", "53411921"])
TRANSIENT_CODES = frozenset(["65541", "65552", "65562"])

_KEY_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$|^[0-9]+$")
_SECRET_RE = re.compile(r"(?i)(authorization:\s*basic\s+)[A-Za-z0-9+/=]+|(://)[^/@\s]+:[^/@\s]+@")


def redact(text: str, secrets: Optional[list] = None) -> str:
    """Remove Authorization headers, URL user info and the given secret values from text."""
    text = _SECRET_RE.sub(lambda m: (m.group(1) + "********") if m.group(1) else (m.group(2) + "********@"), text)
    for secret in secrets or []:
        if secret and len(str(secret)) >= 3:
            text = text.replace(str(secret), "********")
    return text


# ZAPI name prefix -> the CLI command directory a role grants it through (first match wins)
ZAPI_COMMANDS = (("snapshot-restore-file", "volume snapshot restore-file"), ("snapshot-restore-volume",
                 "volume snapshot restore"), ("snapshot-", "volume snapshot"), ("cg-", "volume snapshot"),
                 ("snapmirror-", "snapmirror"), ("lun-", "lun"), ("file-", "volume file"),
                 ("volume-", "volume"), ("sis-", "volume efficiency"), ("job-", "job"))


def privilege_path(path: str) -> str:
    """The REST role privilege path of PATH: /api/storage/volumes/<uuid>/snapshots -> /api/storage/volumes/*/snapshots.

    ONTAP grants REST rights per API path (security login rest-role); object keys in the path are wildcards.
    """
    parts = []
    for part in path.split("?", 1)[0].split("/"):
        parts.append("*" if _KEY_RE.match(part) else part)
    return "/".join(parts)


def forbidden_hint(api: str, username: str, hostname: str, operation: str = "") -> str:
    """What an HTTP 403 / ZAPI 13003 means: which user lacks which right on which call, and how to grant it."""
    who = "ONTAP user %s" % username if username else "the ONTAP user"
    where = " on %s" % hostname if hostname else ""
    method, _sep, path = api.partition(" ") if api.startswith(("GET ", "POST ", "PATCH ", "DELETE ", "PUT ")) \
        else ("", "", "")
    if path:
        access = "readonly" if method == "GET" else "all"
        return ("%s%s lacks the privilege for %s %s (%s): its role needs access %s to the API path %s; grant it "
                "(security login rest-role create -role <role> -api %s -access %s) or use another user."
                % (who, where, method, path, operation or "this call", access, privilege_path(path),
                   privilege_path(path), access))
    if api:
        cmd = next((c for prefix, c in ZAPI_COMMANDS if api.startswith(prefix)), "<command>")
        return ("%s%s lacks the privilege for the ZAPI call %s (%s): its role needs the command directory %s; "
                "grant it (security login role create -role <role> -cmddirname \"%s\" -access all) or use "
                "another user." % (who, where, api, operation or "this call", cmd, cmd))
    return ("%s%s lacks the right to %s; grant it to the role (REST: the API path of this call, CLI: the matching "
            "command) or use another user." % (who, where, operation or "do this"))


class OntapError(KvmsnapError):
    """An ONTAP call failed.

    status: HTTP status (REST or ZAPI transport) or None; code: REST error code digits or ZAPI errno.
    result: what was done before the failure, for the module's failure result (None: nothing to report).
    """

    def __init__(self, message: str, status: Optional[int] = None, code: Any = None, target: Optional[str] = None,
                 operation: str = "", hostname: str = "", hint: Optional[str] = None, transient: bool = False,
                 api: str = "", username: str = ""):
        self.message = str(message)
        self.api = api  # REST "METHOD /api/path" or the ZAPI name: what a 403 names
        self.username = username
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
            return forbidden_hint(self.api, self.username, self.hostname, self.operation)
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

    def with_hint(self, hint: str, keep: bool = False) -> OntapError:
        """Set the hint (what to do next) shown after the message; KEEP=True sets it only when the error has no
        hint of its own yet (the kind's default hint does not count)."""
        if not (keep and self._hint):
            self._hint = hint
        return self

    def with_context(self, operation: Optional[str] = None, hostname: Optional[str] = None) -> OntapError:
        if operation and not self.operation:
            self.operation = operation
        if hostname and not self.hostname:
            self.hostname = hostname
        return self

    def to_dict(self) -> dict:
        return {"message": self.message, "status": self.status, "code": self.code, "target": self.target,
                "operation": self.operation, "hostname": self.hostname, "api": self.api}
