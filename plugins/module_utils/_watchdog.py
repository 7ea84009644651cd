# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fence watchdog: a detached process per run that releases the run's VMs by itself.

This module util is PRIVATE to the collection. It may change without notice.

A module shipped with AnsiballZ cannot start ``python -m <this module>`` on the target (the
collection is not installed there), so the watchdog is a small self-contained script
(``WATCHDOG_SOURCE``, stdlib + libvirt-python only) that the module writes to
``<state_dir>/watchdog.py`` (0600) and starts with the module's own interpreter:
``[sys.executable, <state_dir>/watchdog.py, <journal path>]`` in a new session, no shell.

The watchdog polls the journal and

* exits as soon as the journal is final (released/recovered) or gone;
* releases (resume what the run suspended, thaw what it froze; never anything else) when the
  deadline passes, or at once when the run's module process died while the run was still
  quiescing, or when the journal says ``release_on_owner_exit`` (vm_backup) and the module
  process is gone (kill -9, OOM, lost controller);
* records the outcome in the journal (``released_by: watchdog``), removes the run's locks, exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, Optional

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal
from ansible_collections.kvmsnap.core.plugins.module_utils._atomic_file import write_file_atomic

WATCHDOG_SOURCE = r'''# kvmsnap.core fence watchdog (written by vm_quiesce/vm_backup; do not edit)
import fcntl
import json
import os
import sys
import time

POLL = 0.2
GRACE_EXIT = 120.0


def proc_start(pid):
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as fh:
            rest = fh.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()
        if rest[0] == "Z":
            return None
        return int(rest[19])
    except Exception:
        return None


def alive(entry):
    try:
        pid = int(entry.get("pid"))
    except Exception:
        return False
    start = proc_start(pid)
    return start is not None and (entry.get("start") is None or int(entry.get("start")) == start)


def read(path):
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except Exception:
        return {}


def write(path, journal):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write((json.dumps(journal, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)


def locked(path):
    fd = os.open(os.path.join(os.path.dirname(path), ".journal.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def log(state_dir, text):
    try:
        fd = os.open(os.path.join(state_dir, "watchdog.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write("%s pid %d %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getpid(), text))
    except Exception:
        pass


def release_vm(libvirt, uri, vm, agent_timeout, tries=5):
    last = None
    for attempt in range(tries):
        try:
            conn = libvirt.open(uri)
            try:
                dom = conn.lookupByUUIDString(vm["uuid"])
                if vm["action"] in ("frozen", "auto"):
                    try:
                        dom.agentSetResponseTimeout(int(agent_timeout))
                    except libvirt.libvirtError:
                        pass
                    try:
                        dom.fsThaw()
                    except libvirt.libvirtError:
                        if vm["action"] == "frozen":
                            raise
                    if vm["action"] == "frozen":
                        return "thawed"
                state = dom.state()[0]
                if state == libvirt.VIR_DOMAIN_PAUSED:
                    dom.resume()
                    return "resumed"
                return "already running" if state == libvirt.VIR_DOMAIN_RUNNING else "not paused (state %d)" % state
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return "gone"
            last = err
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(str(last))


def main(path):
    state_dir = os.path.dirname(os.path.dirname(path))
    me = {"pid": os.getpid(), "start": proc_start(os.getpid()), "role": "watchdog"}
    reason = None
    while True:
        journal = read(path)
        if journal is None:
            return 0
        if journal.get("state") in ("released", "recovered"):
            return 0
        now = time.time()
        deadline = float(journal.get("deadline") or 0)
        module_owners = [o for o in journal.get("owners", []) if o.get("role") == "module"]
        owner_gone = bool(module_owners) and not any(alive(o) for o in module_owners)
        if now >= deadline:
            reason = "deadline"
        elif owner_gone and (journal.get("release_on_owner_exit") or journal.get("state") == "quiescing"):
            reason = "owner process gone"
        elif now > deadline + GRACE_EXIT:
            return 0
        if reason:
            break
        time.sleep(max(0.02, min(POLL, deadline - now)))
    log(state_dir, "releasing run %s: %s" % (journal.get("run_id"), reason))
    try:
        import libvirt
        libvirt.registerErrorHandler(lambda _c, _e: None, None)
    except Exception as err:
        log(state_dir, "cannot import libvirt: %s" % err)
        return 2
    results = {}
    for vm in journal.get("vms", []):
        if vm.get("action") in ("suspended", "frozen", "auto") and not vm.get("released"):
            try:
                results[vm["uuid"]] = (release_vm(libvirt, journal.get("uri"), vm,
                                                  journal.get("agent_timeout") or 10), None, time.time())
            except Exception as err:
                results[vm["uuid"]] = (None, str(err), None)
            log(state_dir, "vm %s (%s): %s" % (vm.get("name"), vm["uuid"], results[vm["uuid"]][:2]))
    fd = locked(path)
    try:
        journal = read(path) or journal
        if journal.get("state") not in ("released", "recovered"):
            for vm in journal.get("vms", []):
                if vm["uuid"] in results:
                    done, err, at = results[vm["uuid"]]
                    vm["released"] = err is None
                    vm["release_result"] = done
                    vm["release_error"] = err
                    if err is None:
                        vm["released_how"] = "watchdog"
                        vm["released_by"] = "watchdog (%s)" % reason
                        vm["released_at"] = at
            journal["state"] = "released"
            journal["released_by"] = "watchdog (%s)" % reason
            journal["released_at"] = time.time()
            journal.setdefault("owners", []).append(me)
            write(path, journal)
    finally:
        os.close(fd)
    locks = os.path.join(state_dir, "locks")
    try:
        for name in os.listdir(locks):
            lp = os.path.join(locks, name)
            rec = read(lp)
            if name.endswith(".lock") and rec and rec.get("run_id") == (journal.get("run") or journal.get("run_id")):
                os.unlink(lp)
    except Exception:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
'''


def script_path(state_dir: str) -> str:
    return os.path.join(state_dir, "watchdog.py")


def install(state_dir: str) -> str:
    """Write the watchdog source to <state_dir>/watchdog.py (0600) unless it is already there unchanged."""
    path = script_path(state_dir)
    data = WATCHDOG_SOURCE.encode("utf-8")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            if fh.read() == data:
                return path
    except FileNotFoundError:
        pass
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
    entry = _journal.owner(proc.pid, role="watchdog")
    return entry
