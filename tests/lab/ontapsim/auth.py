"""HTTP basic authentication and the role -> allowed actions check."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

REALM = "ontap-sim"


class Auth:
    def __init__(self, users: list[dict[str, Any]], roles: dict[str, set[str]],
                 privileges: dict[str, dict[str, list[dict[str, Any]]]] | None = None) -> None:
        self.users = {u["name"]: u for u in users}
        self.roles = roles
        # role -> {privileges: [{path, access}], commands: [{command, access}]}, as ONTAP lists them
        self.privileges = privileges or {}

    def authenticate(self, header: str | None) -> dict[str, Any] | None:
        """The user for an `Authorization: Basic …` header, or None (missing or wrong)."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(header.split(None, 1)[1].strip(), validate=True)
            name, _sep, password = raw.decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, IndexError):
            return None
        user = self.users.get(name)
        if user is None or not hmac.compare_digest(str(user.get("password", "")), password):
            return None
        return user

    def from_certificate(self, peercert: dict[str, Any] | None) -> dict[str, Any] | None:
        """The user named by a verified client certificate's common name (ONTAP's cert login)."""
        if not peercert:
            return None
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return self.users.get(value)
        return None

    def allowed(self, user: dict[str, Any], action: str) -> bool:
        return action in self.roles.get(user.get("role", "admin"), set())
