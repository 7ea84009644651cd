"""Shared pytest plumbing: the collection on sys.path, the lab's ONTAP simulator, module runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLL_ROOT = REPO / "build" / "collections"
_LINK = COLL_ROOT / "ansible_collections" / "kvmsnap" / "core"

# Tests import the collection as ansible_collections.kvmsnap.core, as Ansible does.
if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    _LINK.symlink_to(REPO)
if str(COLL_ROOT) not in sys.path:
    sys.path.insert(0, str(COLL_ROOT))
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLL_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COLL_ROOT), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(REPO / "tests"))

pytest_plugins = ["helpers.sim_fixtures", "helpers.module_fixtures", "helpers.guest_fixtures", "helpers.testdriver_fixtures"]


def pytest_collection_modifyitems(config, items):
    # In CI a tier that needs libvirtd/KVM must run, never skip: turn such skips into failures.
    if os.environ.get("CI", "").lower() != "true":
        return
    for item in items:
        if item.get_closest_marker("needs_libvirtd") or item.get_closest_marker("needs_kvm_guests"):
            item.add_marker(pytest.mark.ci_must_run)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("ci_must_run"):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this tier must run, but it was skipped: {report.longrepr}"
