"""The watchdog's installed bundle holds everything it imports, and nothing that needs Ansible."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile

from ansible_collections.kvmsnap.core.plugins.module_utils import _watchdog

MODULE_UTILS = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "module_utils")
PREFIX = _watchdog.PACKAGE + "."


def imports_of(name):
    """The module utils NAME imports and whether it imports anything of Ansible."""
    with open(os.path.join(MODULE_UTILS, name + ".py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    utils, ansible = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == _watchdog.PACKAGE:
                utils.update(alias.name for alias in node.names)
            elif node.module.startswith(PREFIX):
                utils.add(node.module[len(PREFIX):])
            elif node.module.split(".")[0] == "ansible":
                ansible.append(node.module)
        elif isinstance(node, ast.Import):
            ansible.extend(a.name for a in node.names if a.name.split(".")[0] == "ansible")
    return utils, ansible


def test_bundle_is_closed_and_free_of_ansible():
    for name in _watchdog.BUNDLE:
        utils, ansible = imports_of(name)
        assert utils <= set(_watchdog.BUNDLE), (name, utils - set(_watchdog.BUNDLE))
        assert not ansible, (name, ansible)


def test_bundle_builds_from_a_zip_as_under_ansiballz(tmp_path):
    """Under AnsiballZ the module utils are read from a zip: the bundle is built from there the same way."""
    payload = tmp_path / "payload.zip"
    parts = _watchdog.PACKAGE.split(".")
    with zipfile.ZipFile(payload, "w") as zf:
        for depth in range(1, len(parts) + 1):
            zf.writestr("/".join(parts[:depth]) + "/__init__.py", "")
        for name in sorted(os.listdir(MODULE_UTILS)):
            if name.endswith(".py"):
                zf.write(os.path.join(MODULE_UTILS, name), "/".join(parts) + "/" + name)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from %s import _watchdog as w; "
            "assert w.__file__.startswith(sys.argv[1]), w.__file__; sys.stdout.buffer.write(w.build_bundle())"
            % _watchdog.PACKAGE)
    out = subprocess.run([sys.executable, "-c", code, str(payload)], capture_output=True, check=True, env={
        k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout
    assert out == _watchdog.build_bundle()
