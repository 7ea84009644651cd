# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence watchdog: a detached process per run that releases the run's VMs by itself.

This module util is PRIVATE to the collection. It may change without notice.

The watchdog outlives the module that starts it, and with it the AnsiballZ payload the module ran from,
and the collection is not installed on the target. So the module writes a runnable copy of the watchdog
into the state dir: ``<state_dir>/watchdog.zip`` (0600), a zip holding this file, the module utils it
imports (``BUNDLE``, their sources read through their loaders from wherever the module runs) and a ``__main__``
that calls ``main``. It is started with the module's own interpreter,
``[sys.executable, <state_dir>/watchdog.zip, <journal path>]``, in a new session, no shell. The zip is
rewritten whenever its content differs from what this version builds (an older copy is replaced).
Everything in the bundle imports with the standard library and libvirt-python only, no Ansible.

The watchdog polls the journal and

* exits as soon as the journal is final (released/recovered) or gone;
* releases (resume what the run suspended, thaw what it froze; never anything else: ``_fence_vm.release_one``,
  the release of the module itself) when the deadline passes, or at once when the run's module process died
  while the run was still quiescing, or when the journal says ``release_on_owner_exit`` (vm_backup) and the
  module process is gone (kill -9, OOM, lost controller);
* records the outcome in the journal (``released_by: watchdog``), removes the run's locks;
* while the journal holds overlays of the overlay fence not committed yet (``_journal.holds_overlays``), even
  a final one, it stays while the run owns them (``_journal.run_owns_overlays``: its module process lives, or a
  vm_quiesce run is between its tasks and inside its deadline); then the watchdog commits them itself
  (``_overlay_recovery.recover`` for the run's VMs) and exits; a module still alive ``OVERLAY_WAIT`` after the
  deadline is left to the next run's recovery.

It logs what it does to ``<state_dir>/watchdog.log``.
"""

from __future__ import annotations

import io
import os
import pkgutil
import subprocess
import sys
import time
import zipfile
from typing import Any, Dict, List, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_gang import parallel
from ansible_collections.kvmsnap.core.plugins.module_utils._fence_vm import release_one
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_recovery import recover

PACKAGE = "ansible_collections.kvmsnap.core.plugins.module_utils"
# the module utils the watchdog imports, directly or not (tests/unit/test_watchdog_bundle.py checks the list)
BUNDLE = ("_watchdog", "_journal", "_lock", "_atomic_file", "_defaults", "_errors", "_fence_conn", "_fence_errors",
          "_fence_gang", "_fence_rules", "_fence_vm", "_libvirt", "_retry", "_domain_xml", "_overlay", "_overlay_journal",
          "_overlay_recovery", "_overlay_rules")
BUNDLE_NAME = "watchdog.zip"
MAIN = ("# kvmsnap.core fence watchdog (written by vm_quiesce/vm_backup; do not edit)\n"
        "import sys\n\n"
        "from %s import _watchdog\n\n"
        "sys.exit(_watchdog.main(sys.argv[1:]))\n" % PACKAGE)
POLL = 0.2  # seconds between two looks at the journal
GRACE_EXIT = 120.0  # a run whose module lives on past its deadline by this much is left to a later run
RETRIES = 4  # libvirt reconnects of the release (libvirtd may be restarting)
OVERLAY_WAIT = 6 * 3600.0  # how long after the deadline a live module may still be committing its overlays


# ---------------------------------------------------------------------------------------------
# the module side: install and start


def bundle_path(state_dir: str) -> str:
    return os.path.join(state_dir, BUNDLE_NAME)


def _source(name: str) -> bytes:
    """The source of module util NAME, from wherever this module was loaded (the AnsiballZ zip, a checkout).

    pkgutil.get_data reads it through the package's loader; a namespace package (module_utils in a checkout,
    without __init__.py) has none that reads files, so the loader of the module itself (imported by this
    file, directly or not) is asked then."""
    data = pkgutil.get_data(PACKAGE, name + ".py")
    if data is None:
        spec = getattr(sys.modules.get("%s.%s" % (PACKAGE, name)), "__spec__", None)
        origin = getattr(spec, "origin", None)
        get_data = getattr(getattr(spec, "loader", None), "get_data", None)
        if get_data is None or not origin:
            raise OSError("cannot read the source of %s.%s for the fence watchdog" % (PACKAGE, name))
        data = get_data(origin)
    return data


def build_bundle() -> bytes:
    """The watchdog zip: __main__, empty package markers and the sources of BUNDLE (fixed timestamps)."""
    files: List[tuple] = [("__main__.py", MAIN.encode("utf-8"))]
    parts = PACKAGE.split(".")
    for depth in range(1, len(parts) + 1):
        files.append(("/".join(parts[:depth]) + "/__init__.py", b""))
    for name in BUNDLE:
        files.append(("/".join(parts) + "/" + name + ".py", _source(name)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def install(state_dir: str) -> str:
    """Write the watchdog zip to <state_dir>/watchdog.zip (0600) unless it is already there unchanged."""
    path = bundle_path(state_dir)
    data = build_bundle()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            if fh.read() == data:
                return path
    except OSError:
        pass
    write_file_atomic(path, data)
    return path


def spawn(state_dir: str, journal_file: str, python: Optional[str] = None) -> Dict[str, Any]:
    """Start the watchdog detached (new session, no shell, stdio to /dev/null); return its owner entry."""
    path = install(state_dir)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        proc = subprocess.Popen([python or sys.executable, path, journal_file], stdin=devnull, stdout=devnull,
                                stderr=devnull, close_fds=True, start_new_session=True, cwd="/")
    finally:
        os.close(devnull)
    # the Popen object is dropped on purpose: the watchdog must outlive this process
    return _journal.owner(proc.pid, role="watchdog")


# ---------------------------------------------------------------------------------------------
# the watchdog process


def log(state_dir: str, text: str) -> None:
    try:
        fd = os.open(os.path.join(state_dir, "watchdog.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write("%s pid %d %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getpid(), text))
    except OSError:
        pass  # the log is a help, never a reason to fail the release


def _read(path: str) -> Optional[Dict[str, Any]]:
    """The journal at PATH; None when it is gone."""
    try:
        return _journal.read_path(path)
    except FileNotFoundError:
        return None


def release_reason(journal: Dict[str, Any], now: float) -> Optional[str]:
    """Why the watchdog must release the run now ('deadline', 'owner process gone'), or None: wait on."""
    deadline = float(journal.get("deadline") or 0)
    module_owners = [o for o in journal.get("owners", []) if o.get("role") == "module"]
    owner_gone = bool(module_owners) and not any(_journal.owner_alive(o) for o in module_owners)
    if now >= deadline:
        return "deadline"
    if owner_gone and (journal.get("release_on_owner_exit") or journal.get("state") == "quiescing"):
        return "owner process gone"
    return None


def watch(path: str) -> int:
    """Wait for the run of the journal at PATH to end or to need a release; release it then. Exit status."""
    state_dir = os.path.dirname(os.path.dirname(path))
    journal_id = os.path.basename(path)[:-len(".json")]
    me = _journal.owner(role="watchdog")
    while True:
        try:
            journal = _read(path)
        except (OSError, _journal.JournalError) as err:
            log(state_dir, "cannot read journal %s: %s; nothing released" % (path, err))
            return 1
        if journal is None:
            return 0
        if _journal.is_final(journal):
            return watch_overlays(path)
        now = time.time()
        reason = release_reason(journal, now)
        if reason:
            break
        deadline = float(journal.get("deadline") or 0)
        if now > deadline + GRACE_EXIT:
            return 0
        time.sleep(max(0.02, min(POLL, deadline - now)))
    log(state_dir, "releasing run %s: %s" % (journal.get("run_id"), reason))
    pending = _journal.pending_vms(journal)
    sc = SharedConnection(journal.get("uri"), retries=RETRIES)
    try:
        results = parallel(pending, lambda vm: release_one(sc, vm, int(journal.get("agent_timeout") or 10)))
        # recorded at once (the connection closed and the log written afterwards): whoever sees the VMs run
        # again finds the journal final a moment later
        record_release(state_dir, journal_id, pending, results, "watchdog (%s)" % reason, me)
    finally:
        sc.close()
    for vm, res in zip(pending, results):
        log(state_dir, "vm %s (%s): %s" % (vm.get("name"), vm["uuid"], (res.get("result"), res.get("error"))))
    _lock.release_run(state_dir, _journal.run_of(journal))
    return watch_overlays(path)


def watch_overlays(path: str) -> int:
    """While the journal at PATH holds overlays not committed: wait for the run's module to commit them, and
    commit them when it is gone (a VM must not stay on an overlay longer than its run). Exit status."""
    state_dir = os.path.dirname(os.path.dirname(path))
    while True:
        try:
            journal = _read(path)
        except (OSError, _journal.JournalError) as err:
            log(state_dir, "cannot read journal %s: %s; overlays left to the next run" % (path, err))
            return 1
        if journal is None or not _journal.holds_overlays(journal):
            return 0
        if not _journal.run_owns_overlays(journal):
            break
        if time.time() > float(journal.get("deadline") or 0) + OVERLAY_WAIT:
            log(state_dir, "run %s still commits its overlays; left to it and the next run" % journal.get("run_id"))
            return 0
        time.sleep(POLL)
    log(state_dir, "committing the overlays of run %s: its module process is gone or its deadline passed"
        % journal.get("run_id"))
    sc = SharedConnection(journal.get("uri"), retries=RETRIES)
    try:
        result = recover(state_dir, sc, vm_uuids=[vm["uuid"] for vm in journal.get("vms", [])])
    except Exception as err:  # libvirtd unreachable: the next run's recovery commits them
        log(state_dir, "overlay recovery of run %s failed: %s" % (journal.get("run_id"), err))
        return 1
    finally:
        sc.close()
    for entry in result["leftovers"]:
        log(state_dir, "overlay %s of vm %s (%s): %s%s" % (entry["overlay"], entry.get("name"), entry["uuid"],
                                                           entry["result"], "; " + entry["error"] if entry["error"] else ""))
    return 0


def record_release(state_dir: str, journal_id: str, pending: List[Dict[str, Any]], results: List[Dict[str, Any]],
                   by: str, me: Dict[str, Any]) -> None:
    """Write the watchdog's release of PENDING (RESULTS, same order) into the journal and mark it final."""
    at = time.time()
    done = {vm["uuid"]: res for vm, res in zip(pending, results)}

    def record(j: Dict[str, Any]) -> None:
        if _journal.is_final(j):
            return
        for vm in j.get("vms", []):
            res = done.get(vm["uuid"])
            if res is None:
                continue
            vm["released"] = not res.get("error")
            vm["release_result"] = res.get("result")
            vm["release_error"] = res.get("error")
            if vm["released"]:
                vm["released_how"] = "watchdog"
                vm["released_by"] = by
                vm["released_at"] = at
        _journal.mark_final(j, "released", by)
        j.setdefault("owners", []).append(me)
    try:
        _journal.update(state_dir, journal_id, record)
    except (OSError, _journal.JournalError) as err:
        log(state_dir, "cannot record the release in journal %s: %s" % (journal_id, err))


def main(argv: List[str]) -> int:
    """Entry point of the installed bundle: ``python watchdog.zip <journal path>``."""
    if len(argv) != 1:
        sys.stderr.write("usage: watchdog.zip <journal path>\n")
        return 2
    return watch(argv[0])
