"""Run the collection's real modules in a subprocess, as Ansible would, and parse their JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable

import pytest

MODULE_PKG = "ansible_collections.kvmsnap.core.plugins.modules"


class ModuleResult(dict):
    """A module's JSON result; `.rc` is the process exit code."""

    rc: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.get("failed")) or self.rc != 0


def run_module(name: str, args: dict[str, Any], check_mode: bool = False, diff: bool = False,
               env: dict[str, str] | None = None, timeout: float = 120,
               wrap: Callable[[list[str]], list[str]] | None = None) -> ModuleResult:
    """Execute plugins/modules/<name>.py with ANSIBLE_MODULE_ARGS from a file, return its result.
    WRAP turns the command into the one run (e.g. guestlab.labd.as_on_the_kvm_host: where the lab's libvirtd runs)."""
    margs = dict(args)
    margs["_ansible_check_mode"] = check_mode
    margs["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": margs}, fh)
        path = fh.name
    try:
        cmd = [sys.executable, "-m", f"{MODULE_PKG}.{name}", path]
        proc = subprocess.run(wrap(cmd) if wrap else cmd,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, check=False)
    finally:
        os.unlink(path)
    out = proc.stdout.strip().splitlines()
    try:
        result = ModuleResult(json.loads(out[-1]))
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"module {name} printed no JSON (rc={proc.returncode}):\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    result.rc = proc.returncode
    return result


@pytest.fixture
def module_runner():
    return run_module
