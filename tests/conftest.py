"""Shared pytest plumbing: the collection on sys.path, the lab's ONTAP simulator, module runs, the lab's temp dirs.

As root, pytest's temp dirs (tmp_path, tmp_path_factory) live under the lab dir (``<lab dir>/tmp/pytest-<pid>``,
0755), not in /tmp/pytest-of-root (0700): QEMU runs as libvirt-qemu under the lab's libvirtd and must reach the guest
disks, the ONTAP simulator's volume directories and the playbook labs made there. ``--basetemp`` still wins.
A session guard hashes /etc/libvirt at the start and fails the run if anything changed it (the lab never may).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from _pytest import tmpdir as _pytest_tmpdir

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
sys.path.insert(0, str(REPO / "tests" / "lab"))

from guestlab import labd

HOST_LIBVIRT_CONF = Path("/etc/libvirt")

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


def _lab_tmp_root() -> Path | None:
    """<lab dir>/tmp when this session may put its temp dirs there (root, lab dir usable), else None."""
    if os.geteuid() != 0:
        return None
    try:
        root = labd.prepare_tmp()
    except (OSError, labd.LabError):
        return None
    for old in [*root.glob("pytest-*"), *root.glob("ansible-*")]:  # temp dirs of sessions that are gone
        pid = old.name.split("-", 1)[1]
        if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
            shutil.rmtree(old, ignore_errors=True)
    return root


def _searchable(make):
    def wrapper(*args, **kwargs):
        path = make(*args, **kwargs)
        os.chmod(path, 0o755)  # pytest makes 0700 dirs; QEMU as libvirt-qemu must traverse them
        return path
    return wrapper


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    root = _lab_tmp_root()
    # Ansible's own temp files (~/.ansible/tmp by default) of every playbook/module run: not in the user's home
    if root is not None:
        ansible_tmp = root / ("ansible-%d" % os.getpid())
        ansible_tmp.mkdir(exist_ok=True)
    else:
        ansible_tmp = Path(tempfile.mkdtemp(prefix="kvmsnap-ansible-"))
    config._kvmsnap_ansible_tmp = ansible_tmp
    for var in ("ANSIBLE_LOCAL_TEMP", "ANSIBLE_REMOTE_TEMP"):
        os.environ.setdefault(var, str(ansible_tmp))
    if config.option.basetemp is None:
        if root is not None:
            config.option.basetemp = str(root / ("pytest-%d" % os.getpid()))
            factory = _pytest_tmpdir.TempPathFactory
            if not getattr(factory, "_kvmsnap_searchable", False):
                factory.getbasetemp = _searchable(factory.getbasetemp)
                factory.mktemp = _searchable(factory.mktemp)
                factory._kvmsnap_searchable = True


def pytest_sessionstart(session):
    session.config._kvmsnap_host_libvirt = labd.tree_digest(HOST_LIBVIRT_CONF)


def pytest_unconfigure(config):
    ansible_tmp = getattr(config, "_kvmsnap_ansible_tmp", None)
    if ansible_tmp is not None:
        shutil.rmtree(ansible_tmp, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_kvmsnap_host_libvirt", None)
    if before is None:
        return
    changed = labd.changed_files(before, labd.tree_digest(HOST_LIBVIRT_CONF))
    if changed:
        sys.stderr.write("\n\nHOST CHANGED: this test session modified the host's libvirt configuration (%s): %s\n"
                         "The lab must never touch /etc/libvirt (it runs its own daemon: tests/lab/labd).\n"
                         % (HOST_LIBVIRT_CONF, ", ".join(changed)))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
