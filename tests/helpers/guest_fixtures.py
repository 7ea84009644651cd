"""Pytest fixtures for real lab guests on the lab's own libvirtd (see tests/lab/guestlab for the API).

SYSTEM_URI       the lab daemon's URI, qemu:///system?socket=<lab dir>/run/libvirt/libvirt-sock
                 (tests/lab/guestlab/labd.py; env KVMSNAP_LAB_URI overrides it). Every test that talks
                 to libvirt uses this constant, never a literal: the host's libvirtd is not the lab's.
libvirt_system   session: a read-write SYSTEM_URI connection; as root it starts the lab daemon when it
                 is not running (tests/lab/labd start); skips (with the reason) when that is impossible,
                 e.g. not root. Tests using it carry @pytest.mark.needs_libvirtd so
                 CI (CI=true) turns that skip into a failure. At session start lab domains of dead
                 runs are removed; at session end every domain whose name starts with this run's
                 prefix (kvs-<pid>-) is destroyed and undefined.
guest_assets     session: the kernel + initramfs (built once, cached in tests/lab/cache/).
real_guest       function: factory real_guest(disk_dir=None, disk_path=None, size_mib=64, name=None,
                 memory_mib=128, with_agent=True, transient=False, wait=True, extra_disks=())
                 -> LabGuest(name, dom, disk_path, boot_seconds, console_log). The disk is made in
                 disk_dir (default: the test's tmp_path, which tests/conftest.py places under the lab
                 dir, reachable by QEMU as libvirt-qemu) unless disk_path names an existing image.
                 At most MAX_REAL_GUESTS (2; env KVMSNAP_LAB_MAX_GUESTS) at once: the machine is
                 shared and guests run under TCG. Always destroyed + undefined at teardown.
minimal_guests   function: factory minimal_guests(n, workdir=None, start=True, transient=False)
                 -> [virDomain]: boot-sector guests (cli;hlt) for scale tests, started side by side;
                 cleaned up (side by side, guestlab.destroy_all).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tests" / "lab"
if str(LAB) not in sys.path:
    sys.path.insert(0, str(LAB))

import guestlab
from guestlab import labd

MAX_REAL_GUESTS = int(os.environ.get("KVMSNAP_LAB_MAX_GUESTS", "2"))
SYSTEM_URI = labd.uri()
_COUNTER = itertools.count(1)


@dataclass
class LabGuest:
    name: str
    dom: Any
    disk_path: str
    boot_seconds: float | None = None
    console_log: str = ""
    extra_disks: list[str] = field(default_factory=list)

    def read_file(self, path: str) -> bytes:
        return guestlab.read_guest_file(self.dom, path)

    def writer_numbers(self) -> list[int]:
        return guestlab.parse_writer_log(self.read_file("/data/log.txt"))


def _unique_name(kind: str) -> str:
    return f"{guestlab.run_prefix()}{kind}{next(_COUNTER)}"


class LiveConnection:
    """The session's lab libvirtd connection, reopened when libvirtd was restarted under it.

    Tests of F7 (docs/dev/faults.md#f7: libvirtd restart inside the fence) restart the daemon; every later test must still
    get a working connection. Attribute access goes to the current virConnect.
    """

    def __init__(self, uri: str) -> None:
        import libvirt
        self._libvirt = libvirt
        self._uri = uri
        self._conn = libvirt.open(uri)

    def _live(self):
        # isAlive() can still say yes just after the daemon went away: ask it something cheap
        try:
            self._conn.getLibVersion()
            return self._conn
        except self._libvirt.libvirtError:
            pass
        self._conn = self._libvirt.open(self._uri)
        return self._conn

    def __getattr__(self, name: str):
        return getattr(self._live(), name)


def _fresh(conn, dom):
    """DOM through CONN's current connection (the one DOM came from may have died with libvirtd)."""
    try:
        return conn.lookupByUUIDString(dom.UUIDString())
    except Exception:  # gone already
        return None


def ensure_lab_daemon() -> str | None:
    """Start the lab's libvirtd unless it runs (or KVMSNAP_LAB_URI names another one); None, or why it cannot."""
    if os.environ.get("KVMSNAP_LAB_URI"):
        return None
    if os.geteuid() != 0:
        if labd.pid_of("libvirtd"):
            return None
        return ("the libvirt tiers need root: the lab runs its own privileged libvirtd (QEMU as libvirt-qemu, "
                "stock settings) in a private mount namespace; run as root, or start it with sudo tests/lab/labd start")
    try:
        labd.start()
    except labd.LabError as err:
        return f"cannot start the lab's libvirtd: {err}"
    return None


@pytest.fixture(scope="session")
def libvirt_system():
    try:
        import libvirt
    except ImportError:
        pytest.skip("libvirt-python is not installed in this venv (pip install libvirt-python)")
    why = ensure_lab_daemon()
    if why:
        pytest.skip(why)
    try:
        conn = LiveConnection(SYSTEM_URI)
    except libvirt.libvirtError as err:
        pytest.skip(f"the lab's libvirtd is not reachable at {SYSTEM_URI} ({err}); start it with tests/lab/labd start")
    guestlab.cleanup_stale(conn)  # leftovers of earlier runs that died (their pid is gone)
    try:
        yield conn
    finally:
        try:
            guestlab.cleanup_prefix(conn, guestlab.run_prefix())
        finally:
            conn.close()


@pytest.fixture(scope="session")
def guest_assets(tmp_path_factory):
    missing = guestlab.missing_host_commands()
    cache = os.environ.get("KVMSNAP_LAB_CACHE", str(LAB / "cache"))
    if missing and not (Path(cache) / "guest" / "manifest.json").exists():
        pytest.skip("the guest builder needs: " + ", ".join(missing))
    try:
        return guestlab.build_assets(cache)
    except guestlab.BuildError as err:
        pytest.skip(f"cannot build the lab guest (apt reachable? tests/lab/guest-builder build): {err}")


@pytest.fixture
def real_guest(libvirt_system, guest_assets, tmp_path):
    made: list[LabGuest] = []

    def factory(disk_dir: str | os.PathLike | None = None, disk_path: str | os.PathLike | None = None,
                size_mib: int = 64, name: str | None = None, memory_mib: int = 128, with_agent: bool = True,
                transient: bool = False, wait: bool = True, extra_disks: list[str] | tuple[str, ...] = ()
                ) -> LabGuest:
        active = [g for g in made if guestlab.domain._is_active(g.dom)]
        if len(active) >= MAX_REAL_GUESTS:
            pytest.fail(f"at most {MAX_REAL_GUESTS} real lab guests at once (shared CPU, TCG); "
                        f"running: {[g.name for g in active]} (KVMSNAP_LAB_MAX_GUESTS raises the limit)")
        gname = name or _unique_name("g")
        if not gname.startswith(guestlab.run_prefix()):
            gname = guestlab.run_prefix() + gname
        if disk_path is None:
            ddir = Path(disk_dir) if disk_dir is not None else tmp_path
            disk = str(ddir / f"{gname}-data.img")
        else:
            disk = str(disk_path)
        if not os.path.exists(disk):
            guestlab.make_data_disk(disk, size_mib)
        started = time.monotonic()
        dom = guestlab.define_guest(libvirt_system, gname, disk, guest_assets, memory_mib=memory_mib,
                                    with_agent=with_agent, transient=transient, extra_disks=list(extra_disks))
        guest = LabGuest(gname, dom, disk, console_log=guestlab.console_log_path(gname),
                         extra_disks=[str(p) for p in extra_disks])
        made.append(guest)
        if wait and with_agent:
            guestlab.wait_agent_ready(dom, timeout=120)
            guest.boot_seconds = time.monotonic() - started
        return guest

    try:
        yield factory
    finally:
        guestlab.destroy_all([_fresh(libvirt_system, guest.dom) for guest in made])


@pytest.fixture
def minimal_guests(libvirt_system, tmp_path):
    made: list[Any] = []

    def factory(n: int, workdir: str | os.PathLike | None = None, start: bool = True,
                transient: bool = False) -> list[Any]:
        wdir = str(workdir) if workdir is not None else str(tmp_path / "minimal")
        names = [_unique_name("m") for _i in range(n)]

        def define(name: str):
            return guestlab.define_minimal_guest(libvirt_system, name, wdir, start=start, transient=transient)

        # side by side: libvirtd starts several QEMUs in about the time of one
        with ThreadPoolExecutor(max_workers=max(1, min(n, 8))) as pool:
            futures = [pool.submit(define, name) for name in names]
        doms = []
        for future in futures:
            if future.exception() is None:
                made.append(future.result())
                doms.append(future.result())
        for future in futures:
            future.result()  # the first failure, once every guest that did start is in `made` (torn down)
        return doms

    try:
        yield factory
    finally:
        guestlab.destroy_all([_fresh(libvirt_system, dom) for dom in made])
