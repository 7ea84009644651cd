"""tests/publish/publish_check.py: the version-overridden copy of a tarball, and what counts as a problem.

(`make publish-check` runs the real galaxy-importer on the real tarball; these check the script's own logic.)
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("publish_check", REPO / "tests" / "publish" / "publish_check.py")
assert _spec and _spec.loader
publish_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(publish_check)


def _tarball(path: Path, version: str) -> Path:
    manifest = {"collection_info": {"namespace": "kvmsnap", "name": "core", "version": version}, "file_manifest_file": {}}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("MANIFEST.json", json.dumps(manifest).encode()), ("FILES.json", b'{"files": []}'),
                           ("roles/backup/README.md", b"# kvmsnap.core.backup\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_copy_changes_only_the_manifest_version(tmp_path):
    source = _tarball(tmp_path / "kvmsnap-core-0.1.0.tar.gz", "0.1.0")
    copy = publish_check.with_version(source, "1.0.0", tmp_path)
    assert copy.name == "kvmsnap-core-1.0.0.tar.gz"
    before, after = _members(source), _members(copy)
    assert sorted(before) == sorted(after)
    assert json.loads(after["MANIFEST.json"])["collection_info"]["version"] == "1.0.0"
    assert {k: v for k, v in after.items() if k != "MANIFEST.json"} == {k: v for k, v in before.items() if k != "MANIFEST.json"}


def test_versions_compare_as_numbers():
    assert publish_check.version_tuple("0.1.0") < publish_check.FIRST_PUBLIC
    assert publish_check.version_tuple("1.0.0") == publish_check.FIRST_PUBLIC
    assert publish_check.version_tuple("10.0.0-beta1") > publish_check.FIRST_PUBLIC


def test_errors_and_unexplained_warnings_are_problems():
    lines = [
        "Importing with galaxy-importer 0.4.44",
        "WARNING: plugins/filter/catalog.yml:9:6: E999 SyntaxError: unterminated string literal (detected at line 9)",
        "WARNING: plugins/modules/vm_info.py:12:1: W503 line break before binary operator",
        "ERROR: The import failed for the following reason: No role readme found.",
        "Importer processing completed successfully",
    ]
    assert publish_check.problems(lines) == lines[2:4]
    # the accepted warning is about YAML sidecars only: the same message on a Python file is a problem
    python = "WARNING: plugins/filter/roles.py:9:6: E999 SyntaxError: unterminated string literal (detected at line 9)"
    assert publish_check.problems([python]) == [python]
