"""What the collection tarball ships: `ansible-galaxy collection build` on this checkout, then its file list.

The tarball holds what a user runs and reads (plugins, roles, playbooks, meta, docs, changelogs, README,
COPYING) and nothing of the development set-up: no lab (ONTAP simulator, guest builder), no benchmarks,
no test tiers (they need the lab and the checkout; galaxy.yml's build_ignore says why), no CI or tool
configuration, no build output. The size bound catches a large tree coming back (the lab alone is
several hundred KB compressed).
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tarfile
from pathlib import Path
from typing import List

import pytest
from helpers.galaxy_build import REPO, build_tarball, galaxy_meta, tarball_files

# The runtime content and the user documentation: every such file of the checkout must ship.
SHIPPED_PREFIXES = ("plugins/", "roles/", "playbooks/", "meta/", "docs/", "changelogs/")
SHIPPED_FILES = ("README.md", "COPYING")
# Graphviz sources: the SVGs rendered from them ship instead.
NOT_SHIPPED_DOCS = ("docs/diagrams/*.dot",)
# Development files that must never ship (globs on the path in the tarball).
FORBIDDEN = (
    "tests/lab/*", "tests/bench/*", "tests/helpers/*", "tests/unit/*", "tests/sim/*", "tests/netapp/*",
    "tests/integration/*", "tests/conftest.py", "tests/output/*",
    ".ci/*", ".venv/*", "build/*", ".git/*", ".gitignore", "Makefile",
    "ruff.toml", "mypy.ini", "pytest.ini", "requirements-dev.txt", "bindep.txt", "requirements.txt",
    "execution-environment.yml", "*.tar.gz", "*.pyc", "*/__pycache__/*", "changelogs/.plugin-cache.yaml",
)
MAX_BYTES = 800_000


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tarball(tmp_path_factory.mktemp("galaxy-build"))


@pytest.fixture(scope="module")
def shipped(tarball: Path) -> List[str]:
    return tarball_files(tarball)


def checkout_files() -> List[str]:
    """Files of the checkout (tracked, or new and not ignored), as `make sanity` copies them."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return sorted(path for path in out.splitlines() if path and (REPO / path).is_file())


def _matches(path: str, patterns: tuple) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def test_no_lab_bench_or_dev_file_ships(shipped: List[str]) -> None:
    leaked = [path for path in shipped if _matches(path, FORBIDDEN)]
    assert not leaked, "development files in the tarball (add them to galaxy.yml build_ignore): %s" % leaked
    tests = [path for path in shipped if path.startswith("tests/") and not path.startswith("tests/sanity/")]
    assert not tests, "only tests/sanity/ may ship from tests/: %s" % tests


def test_every_runtime_and_doc_file_ships(shipped: List[str]) -> None:
    wanted = [path for path in checkout_files()
              if (path.startswith(SHIPPED_PREFIXES) or path in SHIPPED_FILES) and not _matches(path, NOT_SHIPPED_DOCS)]
    assert len(wanted) > 100, "the checkout lists too few files: %d" % len(wanted)
    missing = sorted(set(wanted) - set(shipped))
    assert not missing, "files of the checkout missing from the tarball: %s" % missing


def test_nothing_ships_that_the_checkout_does_not_have(shipped: List[str]) -> None:
    generated = {"MANIFEST.json", "FILES.json"}
    extra = sorted(set(shipped) - set(checkout_files()) - generated)
    assert not extra, "files in the tarball that are not files of the checkout: %s" % extra
    assert generated <= set(shipped)


def test_manifest_names_this_collection(tarball: Path) -> None:
    meta = galaxy_meta()
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile("MANIFEST.json")
        assert handle is not None
        info = json.load(handle)["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (meta["namespace"], meta["name"], meta["version"])
    assert info["dependencies"] == (meta.get("dependencies") or {})


def test_size_bound(tarball: Path) -> None:
    size = tarball.stat().st_size
    assert size <= MAX_BYTES, "the tarball is %d bytes (bound %d): did the lab or other large files come back?" % (
        size, MAX_BYTES)


def test_build_ignore_covers_the_forbidden_top_level_files() -> None:
    # A build_ignore entry for a file that is gone is harmless; a dev file of the checkout that no entry
    # or ansible-galaxy default covers would ship. This names such files before a build does.
    ignore = galaxy_meta().get("build_ignore") or []
    at_root = [path for path in checkout_files() if "/" not in path and _matches(path, FORBIDDEN)]
    for path in at_root:
        assert any(fnmatch.fnmatch(path, pattern) for pattern in ignore), "%s is not in build_ignore" % path
