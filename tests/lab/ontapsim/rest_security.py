"""REST security endpoints: accounts and roles with their privileges (read-only, as a pre-flight reads them)."""

from __future__ import annotations

from typing import Any

from .auth import Auth
from .errors import SimError
from .rest_base import HandlerBase, Request, Response
from .state import State

BUILTIN = {"admin", "readonly", "backup", "backup_nodelete"}


class SecurityHandlers(HandlerBase):
    st: State
    auth: Auth

    def _owner(self) -> dict[str, Any]:
        c = self.st.doc["cluster"]
        return {"uuid": c["uuid"], "name": c["name"]}

    def _account(self, user: dict[str, Any]) -> dict[str, Any]:
        return {"owner": self._owner(), "name": user["name"], "role": {"name": user.get("role", "admin")},
                "scope": "cluster", "locked": False,
                "applications": [{"application": app, "authentication_methods": ["password", "certificate"]}
                                 for app in ("http", "ontapi")]}

    def list_accounts(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [self._account(u) for u in self.auth.users.values()], keys=("name",))

    def get_account(self, req: Request, owner: str, name: str) -> Response:
        user = self.auth.users.get(name)
        if user is None or owner != self._owner()["uuid"]:
            raise SimError("not_found", "entry doesn't exist", target="name")
        with self.st.lock:
            return self._one(req, self._account(user), keys=("name",))

    def _role(self, name: str) -> dict[str, Any]:
        return {"owner": self._owner(), "name": name, "builtin": name in BUILTIN, "scope": "cluster",
                "privileges": [dict(p) for p in self.auth.privileges.get(name, {}).get("privileges", [])]}

    def list_roles(self, req: Request) -> Response:
        with self.st.lock:
            return self._collection(req, [self._role(n) for n in sorted(self.auth.privileges)], keys=("name",))

    def _known_role(self, owner: str, name: str) -> None:
        if name not in self.auth.privileges or owner != self._owner()["uuid"]:
            raise SimError("not_found", "entry doesn't exist", target="name")

    def get_role(self, req: Request, owner: str, name: str) -> Response:
        self._known_role(owner, name)
        with self.st.lock:
            return self._one(req, self._role(name), keys=("name",))

    def list_role_privileges(self, req: Request, owner: str, name: str) -> Response:
        self._known_role(owner, name)
        with self.st.lock:
            return self._collection(req, self._role(name)["privileges"], keys=("path",))
