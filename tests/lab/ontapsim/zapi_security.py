"""ZAPI security-login-get-iter and security-login-role-get-iter (a login's role and its command directories)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .auth import Auth
from .state import State
from .zapi_xml import fields


class SecurityZapi:
    """Mixed into ZapiApi after InfoHandlers, whose _iter pages the records."""

    st: State
    auth: Auth

    def security_login_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        admin_vs = self.st.doc["cluster"]["name"]
        recs = [fields("security-login-account-info", {
            "user-name": u["name"], "role-name": u.get("role", "admin"), "application": app,
            "authentication-method": "password", "vserver": admin_vs, "is-locked": "false"})
            for u in self.auth.users.values() for app in ("http", "ontapi", "ssh")]
        return self._iter(  # type: ignore[attr-defined]
            api, "security-login-account-info", recs)

    def security_login_role_get_iter(self, api: ET.Element, svm: dict[str, Any] | None) -> ET.Element:
        admin_vs = self.st.doc["cluster"]["name"]
        recs = [fields("security-login-role-info", {
            "role-name": name, "command-directory-name": cmd["command"], "access-level": cmd["access"],
            "vserver": admin_vs, "role-query": None})
            for name, spec in sorted(self.auth.privileges.items()) for cmd in spec.get("commands", [])]
        return self._iter(  # type: ignore[attr-defined]
            api, "security-login-role-info", recs)
