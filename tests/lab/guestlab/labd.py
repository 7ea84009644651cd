"""The lab's own libvirt daemon: a privileged libvirtd + virtlogd with stock settings in a private mount namespace.

The lab never edits /etc/libvirt and never starts, stops or signals the host's libvirtd. Instead it runs its own
daemons inside a mount namespace (``unshare --mount --propagation private``) in which the lab directory's
``etc/libvirt``, ``run/libvirt``, ``lib/libvirt``, ``log/libvirt`` and ``cache/libvirt`` are bind-mounted over
/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt. Those bind mounts exist only
in that namespace; it dies with the last of its processes (daemons and QEMU), so nothing is ever unmounted on the host.

The configuration files are empty: libvirt's stock defaults (QEMU as libvirt-qemu, dynamic ownership, the
distribution's security driver). ``DIR/kvm`` is a /dev/kvm node with the owner Debian's udev rule gives it
(root:kvm 0660) mounted over /dev/kvm in the namespace: a container's /dev/kvm is often root:root 0600, which QEMU as
libvirt-qemu cannot open, and libvirt then re-probes QEMU's capabilities on every API call (~4 s each).

Layout of DIR (default /var/tmp/kvmsnap-lab, env KVMSNAP_LAB_DIR; 0755 so QEMU as libvirt-qemu reaches the disks)::

    etc/libvirt/{libvirtd,virtlogd,qemu}.conf   empty = stock      run/ lib/ log/ cache/   the daemons' state
    kvm                                         /dev/kvm node      libvirtd.pid virtlogd.pid   the lab's pids
    tmp/                                        pytest's temp dirs (tests/conftest.py) and the demo's files

URI: ``qemu:///system?socket=DIR/run/libvirt/libvirt-sock`` (env KVMSNAP_LAB_URI overrides it for the tests).
Command line: ``tests/lab/labd start|stop|status|uri|remove``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

DEFAULT_DIR = "/var/tmp/kvmsnap-lab"
DAEMONS = ("virtlogd", "libvirtd")  # start order; stopped in reverse
# lab subdirectory -> host path it covers inside the lab's mount namespace
BINDS = (("etc/libvirt", "/etc/libvirt"), ("run/libvirt", "/run/libvirt"), ("lib/libvirt", "/var/lib/libvirt"),
         ("log/libvirt", "/var/log/libvirt"), ("cache/libvirt", "/var/cache/libvirt"))
CONF_FILES = ("libvirtd.conf", "virtlogd.conf", "qemu.conf")
KVM_DEV = "/dev/kvm"


class LabError(RuntimeError):
    pass


def lab_dir() -> Path:
    return Path(os.environ.get("KVMSNAP_LAB_DIR") or DEFAULT_DIR)


def socket_path(base: Path | None = None) -> Path:
    return (base or lab_dir()) / "run" / "libvirt" / "libvirt-sock"


def uri(base: Path | None = None) -> str:
    """The lab daemon's libvirt URI (env KVMSNAP_LAB_URI wins: e.g. a lab started elsewhere)."""
    if base is None and os.environ.get("KVMSNAP_LAB_URI"):
        return os.environ["KVMSNAP_LAB_URI"]
    return "qemu:///system?socket=%s" % socket_path(base)


def host_path(daemon_path: str, base: Path | None = None) -> Path:
    """Where a path the lab's daemons see (e.g. /run/libvirt/qemu/<vm>.pid) is from the host's namespace."""
    for sub, host in BINDS:
        if daemon_path == host or daemon_path.startswith(host + "/"):
            return (base or lab_dir()) / sub / daemon_path[len(host) + 1:]
    return Path(daemon_path)


def pid_file(name: str, base: Path | None = None) -> Path:
    return (base or lab_dir()) / ("%s.pid" % name)


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink("/proc/%s/ns/mnt" % pid)
    except OSError:
        return None


def pid_of(name: str, base: Path | None = None) -> int | None:
    """The pid of the lab's NAME daemon when it runs: from the lab's pid file, and only if that process is NAME
    in a mount namespace other than ours (a recycled pid, or the host's daemon, is never the lab's)."""
    try:
        pid = int(pid_file(name, base).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        comm = Path("/proc/%d/comm" % pid).read_text().strip()
    except OSError:
        return None
    ns = _mount_ns(pid)
    if comm != name or ns is None or ns == _mount_ns("self"):
        return None
    return pid


def status(base: Path | None = None) -> dict:
    base = base or lab_dir()
    return {"dir": str(base), "uri": uri(base), **{name: pid_of(name, base) for name in DAEMONS}}


def _traversable(path: Path) -> str | None:
    """None when every directory on PATH lets others in (libvirt-qemu must reach the disks), else the culprit."""
    for p in [path, *path.parents]:
        try:
            if not os.stat(p).st_mode & stat.S_IXOTH:
                return str(p)
        except FileNotFoundError:
            continue
    return None


def prepare(base: Path | None = None) -> Path:
    """Create the lab directory tree, the empty (stock) configuration files and the /dev/kvm node."""
    base = base or lab_dir()
    prepare_tmp(base)
    for sub, _host in BINDS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name in CONF_FILES:
        (base / "etc" / "libvirt" / name).touch()
    _make_kvm_node(base)
    return base


def prepare_tmp(base: Path | None = None) -> Path:
    """DIR/tmp (0755), for the temp dirs of tests and the demo: reachable by QEMU as libvirt-qemu."""
    base = base or lab_dir()
    tmp = base / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for p in (base, tmp):
        os.chmod(p, 0o755)
    bad = _traversable(tmp)
    if bad:
        raise LabError("lab dir %s: %s is not searchable by others, so QEMU (as libvirt-qemu) cannot reach the lab "
                       "disks; choose another KVMSNAP_LAB_DIR (default %s)" % (base, bad, DEFAULT_DIR))
    return tmp


def _make_kvm_node(base: Path) -> None:
    node = base / "kvm"
    if os.environ.get("KVMSNAP_LAB_KVM_NODE") == "0":  # to measure what a container's /dev/kvm costs (slow)
        if node.exists():
            node.unlink()
        return
    if not os.path.exists(KVM_DEV):
        return
    st = os.stat(KVM_DEV)
    try:
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        gid, mode = 0, 0o666  # no kvm group: QEMU's user must still open it
    else:
        mode = 0o660
    if node.exists() and os.stat(node).st_rdev != st.st_rdev:
        node.unlink()
    if not node.exists():
        os.mknod(node, stat.S_IFCHR | mode, st.st_rdev)
    os.chown(node, 0, gid)
    os.chmod(node, mode)


def _binds_script(base: Path) -> str:
    lines = ["set -e", "mount --make-rprivate /"]
    for sub, host in BINDS:
        if host.startswith("/run/") and not os.path.isdir(host) and os.path.isdir("/etc/libvirt"):
            # /run is a tmpfs: without systemd nothing recreates the package's runtime dir after a boot
            os.makedirs(host, mode=0o755, exist_ok=True)
        if not os.path.isdir(host):
            raise LabError("%s does not exist on this host: install libvirt-daemon-system (tests/lab/bindep.txt)" % host)
        lines.append("mount --bind '%s' '%s'" % (base / sub, host))
    if (base / "kvm").exists():
        lines.append("mount --bind '%s' '%s'" % (base / "kvm", KVM_DEV))
    return "\n".join(lines)


def _daemon_cmd(name: str, base: Path) -> str:
    return "%s -d -p '%s'" % (name, pid_file(name, base))


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise LabError("%s failed (rc %d): %s" % (cmd[0], proc.returncode, (proc.stderr or proc.stdout).strip()))


def _answers(base: Path) -> bool:
    try:
        import libvirt
    except ImportError:
        return subprocess.run(["virsh", "-c", uri(base), "version"], capture_output=True, check=False).returncode == 0
    try:
        conn = libvirt.open(uri(base))
    except libvirt.libvirtError:
        return False
    try:
        conn.getLibVersion()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def _locked(base: Path):
    """One labd start/stop at a time per lab dir (two test sessions may start the lab at once)."""
    with open(base / "labd.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(base: Path | None = None, timeout: float = 30.0) -> str:
    """Start the lab's daemons (idempotent) and wait until libvirtd answers; the URI.

    Only what is missing starts: a lone libvirtd (killed by a test) is started again inside the namespace its
    virtlogd (and the running guests) live in, so it finds their QEMU processes and logs again.
    """
    if os.geteuid() != 0:
        raise LabError("the lab's libvirtd runs as root (it starts QEMU as libvirt-qemu, as on a real host); "
                       "run tests/lab/labd start as root")
    base = prepare(base)
    for name in ("libvirtd", "virtlogd"):
        if shutil.which(name) is None and not os.path.exists("/usr/sbin/" + name):
            raise LabError("%s is not installed: apt-get install libvirt-daemon-system (tests/lab/bindep.txt)" % name)
    with _locked(base):
        _start_missing(base)
    deadline = time.monotonic() + timeout
    while not _answers(base):
        if time.monotonic() > deadline:
            raise LabError("the lab's libvirtd did not answer on %s within %.0f s (its log: journal or %s)"
                           % (uri(base), timeout, base / "log" / "libvirt"))
        time.sleep(0.1)
    return uri(base)


def _start_missing(base: Path) -> None:
    logd = pid_of("virtlogd", base)
    libvirtd = pid_of("libvirtd", base)
    if logd is None and libvirtd is None:
        script = "%s\n%s\n%s" % (_binds_script(base), _daemon_cmd("virtlogd", base), _daemon_cmd("libvirtd", base))
        _run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script])
    else:
        anchor = logd or libvirtd
        missing = [n for n, p in (("virtlogd", logd), ("libvirtd", libvirtd)) if p is None]
        if missing:
            script = "\n".join(_daemon_cmd(n, base) for n in missing)
            _run(["nsenter", "--mount=/proc/%d/ns/mnt" % anchor, "--", "sh", "-c", script])


def _destroy_domains(base: Path) -> None:
    """Power off the lab daemon's running guests: their QEMU processes would keep the namespace alive."""
    try:
        import libvirt
        conn = libvirt.open(uri(base))
    except Exception:  # no binding, or the daemon does not answer: nothing to ask
        return
    try:
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()


def _exited(pid: int, name: str) -> bool:
    """PID is gone, a zombie (its mount namespace, files and locks are released) or no longer NAME (recycled)."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return True
    comm, _sep, rest = stat.partition("(")[2].rpartition(")")
    return comm != name or rest.split()[:1] == ["Z"]


def stop_daemon(name: str, base: Path | None = None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
    """Signal the lab's NAME daemon (by its pid file only) and wait until it is gone; the pid, or None."""
    pid = pid_of(name, base)
    if pid is None:
        return None
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    # the process itself, not its pid file: a daemon removes its pid file before it has finished exiting
    while pid_of(name, base) == pid or not _exited(pid, name):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)
    return pid


def stop(base: Path | None = None) -> list[str]:
    """Stop the lab's guests and daemons; nothing else. The namespace (and its mounts) goes with them."""
    base = base or lab_dir()
    if not base.is_dir():
        return []
    with _locked(base):
        return _stop(base)


def _stop(base: Path) -> list[str]:
    anchor = pid_of("virtlogd", base) or pid_of("libvirtd", base)
    ns = _mount_ns(anchor) if anchor else None
    if pid_of("libvirtd", base):
        _destroy_domains(base)
    stopped = [name for name in reversed(DAEMONS) if stop_daemon(name, base)]
    if ns:
        for pid in _pids_in_namespace(ns):  # QEMU left behind by a killed libvirtd: the namespace is the lab's
            try:
                os.kill(pid, signal.SIGKILL)
                stopped.append("pid %d (%s)" % (pid, Path("/proc/%d/comm" % pid).read_text().strip()))
            except OSError:
                pass
    return stopped


def _pids_in_namespace(ns: str) -> list[int]:
    if ns == _mount_ns("self"):
        return []
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _mount_ns(p) == ns]


def as_on_the_kvm_host(cmd: list[str], cwd: str | os.PathLike | None = None, base: Path | None = None) -> list[str]:
    """CMD run where the lab's daemons run (their mount namespace): the product then sees the files libvirt sees,
    e.g. /var/lib/libvirt/qemu/nvram, as on a real KVM host. CMD unchanged when the lab does not run here.
    Entering a mount namespace moves to its root directory: CWD (the caller's, by default) is kept explicitly."""
    anchor = pid_of("virtlogd", base) or pid_of("libvirtd", base)
    if anchor is None:
        return list(cmd)
    return ["nsenter", "--mount=/proc/%d/ns/mnt" % anchor, "--wd=%s" % (cwd or os.getcwd()), "--", *cmd]


def in_lab_namespace(cmd: list[str], base: Path | None = None) -> bool:
    """Run CMD in the lab daemons' mount namespace; False when the lab does not run here (nothing to do)."""
    anchor = pid_of("virtlogd", base) or pid_of("libvirtd", base)
    if anchor is None:
        return False
    _run(["nsenter", "--mount=/proc/%d/ns/mnt" % anchor, "--", *cmd])
    return True


def bind_mount(source: str | os.PathLike, target: str | os.PathLike, base: Path | None = None) -> None:
    """mount --bind SOURCE TARGET on the host (what the product sees) and in the lab's namespace (what QEMU sees).

    The container's mounts are private, so a mount made after the lab started does not reach the lab's namespace
    by itself (on a host with shared mounts it would, as NFS mounts reach the host's own libvirtd).
    """
    _run(["mount", "--bind", str(source), str(target)])
    in_lab_namespace(["mount", "--bind", str(source), str(target)], base)


def unmount(target: str | os.PathLike, base: Path | None = None) -> None:
    """Undo bind_mount (never raises: teardown)."""
    for cmd in (lambda: _run(["umount", str(target)]), lambda: in_lab_namespace(["umount", str(target)], base)):
        try:
            cmd()
        except LabError:
            pass


def _mounts_under(base: Path) -> list[str]:
    """Mount points (in our namespace) inside BASE, deepest first: e.g. tests/lab/btrfs-scratch's loop mount."""
    root = os.path.realpath(base)
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove(base: Path | None = None) -> Path:
    """Stop the lab, unmount what the lab mounted inside its directory, delete the directory."""
    base = base or lab_dir()
    stop(base)
    if base.exists():
        for point in _mounts_under(base):
            _run(["umount", point])
        shutil.rmtree(base)
    return base


# ---- checks that the lab left the host alone (tests/conftest.py's session guard, test_lab_isolation.py)

_OTHER_RUN = re.compile(r"^kvs-(\d+)-")


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ROOT (symlinks by their target), for 'nothing changed here' checks."""
    digest: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path):
                    digest[path] = "-> " + os.readlink(path)
                else:
                    with open(path, "rb") as fh:
                        digest[path] = hashlib.sha256(fh.read()).hexdigest()
            except OSError as exc:
                digest[path] = "unreadable: %s" % exc.strerror
    return digest


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths that differ, except domains named by OTHER test sessions (kvs-<their pid>-*): a test run of an older
    checkout on the same machine may still use the host's daemon; that is not this session's doing."""
    def ours(path: str) -> bool:
        m = _OTHER_RUN.match(os.path.basename(path))
        return m is None or int(m.group(1)) == os.getpid()
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p) and ours(p))


def host_libvirtd_pids() -> list[int]:
    """libvirtd processes in OUR mount namespace: the host's daemon (the lab's live in the lab's namespace)."""
    me = _mount_ns("self")
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            comm = Path("/proc/%s/comm" % p).read_text().strip()
        except OSError:
            continue
        if comm == "libvirtd" and _mount_ns(p) == me:
            pids.append(int(p))
    return sorted(pids)
