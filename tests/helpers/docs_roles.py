"""The ONTAP roles docs/security.md gives (section ONTAP privileges), parsed from its command blocks."""

from __future__ import annotations

import shlex
from pathlib import Path

SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _commands(prefix: str) -> list[dict[str, str]]:
    out = []
    for line in SECURITY_MD.read_text().splitlines():
        if line.startswith(prefix):
            words = shlex.split(line[len(prefix):])
            opts = {words[i].lstrip("-"): words[i + 1] for i in range(0, len(words) - 1, 2)}
            out.append(opts)
    return out


def rest_role() -> list[dict[str, str]]:
    """[{path, access}] of `security login rest-role create` lines."""
    return [{"path": o["api"], "access": o["access"]} for o in _commands("security login rest-role create ")]


def zapi_role() -> list[dict[str, str]]:
    """[{command, access}] of `security login role create` lines."""
    return [{"command": o["cmddirname"], "access": o["access"]} for o in _commands("security login role create ")]
