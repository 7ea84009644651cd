"""ZAPI (ONTAPI) at /servlets/netapp.servlets.admin.XMLrequest_filer (placeholder)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import quoteattr

ZAPI_PATH = "/servlets/netapp.servlets.admin.XMLrequest_filer"


class ZapiApi:
    def __init__(self, state: Any, ops: Any, knobs: Any, auth: Any) -> None:
        self.st = state

    def peek(self, raw: bytes) -> tuple[str | None, str | None]:
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return None, None
        api = next(iter(root), None)
        return (api.tag.split("}")[-1] if api is not None else None), root.get("vfiler")

    def failure(self, errno: str, reason: str) -> tuple[bytes, str, str]:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<netapp version="1.21" '
                f'xmlns="http://www.netapp.com/filer/admin"><results status="failed" errno={quoteattr(errno)} '
                f"reason={quoteattr(reason)}/></netapp>")
        return body.encode(), "failed", errno

    def handle(self, raw: bytes, user: dict[str, Any]) -> tuple[bytes, str, str | None]:
        api, _ = self.peek(raw)
        return self.failure("13005", f"Unable to find API: {api}")
