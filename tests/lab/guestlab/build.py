"""Build the lab guest (kernel + initramfs) from Debian packages only: apt-get download + dpkg -x.

Nothing is fetched but .deb files through apt. Everything is cached under ``cache_dir``:
``debs/`` (the downloaded packages) and ``guest/`` (vmlinuz, initrd.img, manifest.json). A build
whose manifest matches (builder version, init script, package versions) is reused without
calling apt at all, so an offline machine with a warm cache still works.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass

from .elf import Elf

BUILDER_VERSION = 5
# Debian packages the builder itself runs (checked at runtime; the lead keeps tests/lab/bindep.txt).
HOST_COMMANDS = {"apt-get": "apt", "apt-cache": "apt", "dpkg": "dpkg", "mkfs.ext4": "e2fsprogs",
                 "debugfs": "e2fsprogs"}
KERNEL_META = ("linux-image-cloud-amd64", "linux-image-amd64")
GUEST_PACKAGES = ("busybox-static", "qemu-guest-agent")
# Modules the guest needs, loaded in dependency order (computed from each .ko's modinfo);
# those built into the kernel (modules.builtin) are skipped. ext4 is built in on Debian's kernels.
WANTED_MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "ext4", "button", "evdev")
AGENT_PORT_NAME = "org.qemu.guest_agent.0"
WRITER_INTERVAL_US = 50000

INIT_SCRIPT = r"""#!/bin/busybox sh
# kvmsnap lab guest: virtio modules, ext4 data disk at /data, a writer, qemu-guest-agent.
/bin/busybox --install -s /bin
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mkdir -p /proc /sys /dev /run /data /tmp /var/run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/qga
echo "kvmsnap-guest: init $(cat /proc/uptime)" > /dev/console
while read -r m; do
    insmod "/lib/modules/$m.ko" 2>/dev/console || echo "kvmsnap-guest: insmod $m failed" > /dev/console
done < /etc/modules.order
# ACPI power button (virDomainShutdown without the agent): busybox acpid runs /etc/acpi/PWRF/00000080
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\nexec /sbin/shutdown -h -P +0 acpi-power-button\n' > /etc/acpi/PWRF/00000080
chmod 755 /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /run/acpid.log 2>/dev/console
# data disk: the first virtio disk
for _ in $(seq 100); do [ -b /dev/vda ] && break; usleep 50000; done
if mount -t ext4 -o rw /dev/vda /data 2>/dev/console; then
    echo "kvmsnap-guest: /data mounted" > /dev/console
    (
        n=0
        if [ -s /data/log.txt ]; then n=$(tail -n 1 /data/log.txt | cut -d' ' -f1); fi
        case "$n" in ''|*[!0-9]*) n=0 ;; esac
        while [ ! -e /run/stop-writer ]; do
            n=$((n + 1))
            echo "$n $(date +%s)" >> /data/log.txt
            sync -d /data/log.txt
            usleep @INTERVAL@
        done
    ) &
    echo $! > /run/writer.pid
else
    echo "kvmsnap-guest: no data disk at /dev/vda" > /dev/console
fi
# qemu-guest-agent on the virtio port named org.qemu.guest_agent.0 (usually /dev/vport0p1)
port=""
for _ in $(seq 100); do
    for p in /sys/class/virtio-ports/*; do
        [ -e "$p/name" ] && [ "$(cat "$p/name")" = "@AGENT@" ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -e "$port" ] && break
    usleep 50000
done
if [ -n "$port" ]; then
    echo "kvmsnap-guest: agent on $port $(cat /proc/uptime)" > /dev/console
    while true; do
        qemu-ga -m virtio-serial -p "$port" -t /run/qga 2>/dev/console
        sleep 1
    done &
else
    echo "kvmsnap-guest: no agent channel" > /dev/console
fi
while true; do sleep 3600; done
"""

SHUTDOWN_SCRIPT = r"""#!/bin/busybox sh
# qemu-ga runs /sbin/shutdown -h|-r -P +0 for guest-shutdown: stop the writer, unmount, power off.
touch /run/stop-writer
[ -s /run/writer.pid ] && kill "$(cat /run/writer.pid)" 2>/dev/null
usleep 100000
sync
umount /data 2>/dev/null
case " $* " in *" -r "*|*" reboot "*) reboot -f ;; *) poweroff -f ;; esac
"""


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class GuestAssets:
    kernel: str
    initrd: str
    kernel_version: str = ""
    cmdline: str = "console=ttyS0 quiet loglevel=3 panic=-1"

    def as_dict(self) -> dict:
        return {"kernel": self.kernel, "initrd": self.initrd, "kernel_version": self.kernel_version,
                "cmdline": self.cmdline}


def missing_host_commands() -> list[str]:
    """Host commands the lab needs that are not installed, as 'command (package)'."""
    return [f"{cmd} ({pkg})" for cmd, pkg in HOST_COMMANDS.items()
            if shutil.which(cmd) is None and not os.path.exists(f"/sbin/{cmd}")]


def _init_script() -> str:
    return INIT_SCRIPT.replace("@AGENT@", AGENT_PORT_NAME).replace("@INTERVAL@", str(WRITER_INTERVAL_US))


def _run(argv: list[str], cwd: str | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _kernel_package() -> str:
    for meta in KERNEL_META:
        try:
            out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", meta])
        except BuildError:
            continue
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Depends: linux-image-"):
                return line.split(":", 1)[1].strip()
    raise BuildError(f"no kernel package found for {KERNEL_META}; run 'apt-get update' (bookworm main)")


def _library_packages(pkg: str) -> list[str]:
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", pkg])
    names = set()
    for line in out.splitlines():
        if line.startswith(" ") or line.startswith("<"):
            continue
        name = line.strip()
        if name.startswith("lib") and "perl" not in name:
            names.add(name)
    return sorted(names)


def _download(debs_dir: str, packages: list[str]) -> dict[str, str]:
    """Make sure a .deb of each package is in debs_dir; return {package: deb path}."""
    os.makedirs(debs_dir, exist_ok=True)
    result: dict[str, str] = {}
    missing = []
    for pkg in packages:
        found = sorted(glob.glob(os.path.join(debs_dir, f"{pkg}_*.deb")))
        if found:
            result[pkg] = found[-1]
        else:
            missing.append(pkg)
    if missing:
        _run(["apt-get", "download", "-q", *missing], cwd=debs_dir)
        for pkg in missing:
            found = sorted(glob.glob(os.path.join(debs_dir, f"{pkg}_*.deb")))
            if not found:
                raise BuildError(f"apt-get download {pkg} produced no .deb in {debs_dir}")
            result[pkg] = found[-1]
    return result


def _resolve_in_root(root: str, path: str, depth: int = 0) -> str:
    """Resolve a path inside an extracted tree, following symlinks relative to that tree."""
    if depth > 40:
        raise BuildError(f"symlink loop at {path} in {root}")
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        cand = os.path.join(root, cur.lstrip("/"), part)
        if os.path.islink(cand):
            target = os.readlink(cand)
            nxt = target if target.startswith("/") else os.path.normpath(os.path.join(cur, target))
            rest = "/".join(parts[i + 1:])
            return _resolve_in_root(root, nxt + ("/" + rest if rest else ""), depth + 1)
        cur = os.path.join(cur, part)
    return os.path.join(root, cur.lstrip("/"))


LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


def _find_lib(root: str, soname: str) -> str | None:
    for d in LIB_DIRS:
        cand = _resolve_in_root(root, f"{d}/{soname}")
        if os.path.isfile(cand):
            return cand
    return None


def _library_closure(root: str, binary: str) -> tuple[str, dict[str, str]]:
    """(interpreter path in the guest, {soname: file in root}) for a binary inside root."""
    elf = Elf.from_path(_resolve_in_root(root, binary))
    interp = elf.interp() or "/lib64/ld-linux-x86-64.so.2"
    todo = list(elf.needed())
    libs: dict[str, str] = {}
    while todo:
        soname = todo.pop()
        if soname in libs:
            continue
        path = _find_lib(root, soname)
        if path is None:
            raise BuildError(f"{binary} needs {soname}, which none of the extracted packages provide")
        libs[soname] = path
        todo.extend(Elf.from_path(path).needed())
    interp_file = _resolve_in_root(root, interp)
    if not os.path.isfile(interp_file):
        raise BuildError(f"interpreter {interp} of {binary} is missing from the extracted libc")
    libs["__interp__"] = interp_file
    return interp, libs


def _module_order(kroot: str, kver: str, wanted: tuple[str, ...]) -> tuple[list[str], dict[str, str], list[str]]:
    """Modules to load (dependencies first), {name: .ko path}, and the wanted ones that are built in."""
    moddir = os.path.join(kroot, "lib", "modules", kver)
    builtin = set()
    bfile = os.path.join(moddir, "modules.builtin")
    if os.path.exists(bfile):
        with open(bfile) as fh:
            builtin = {os.path.basename(line.strip()).split(".ko")[0].replace("-", "_") for line in fh}
    index: dict[str, str] = {}
    for path in glob.glob(os.path.join(moddir, "kernel", "**", "*.ko*"), recursive=True):
        name = os.path.basename(path).split(".ko")[0].replace("-", "_")
        index[name] = path
    order: list[str] = []
    seen: set[str] = set()
    builtin_wanted = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in builtin:
            if name in wanted:
                builtin_wanted.append(name)
            seen.add(name)
            return
        if name not in index:
            raise BuildError(f"kernel {kver}: module {name} (needed by {' <- '.join(chain) or 'the guest'}) "
                             "is neither built in nor shipped")
        seen.add(name)
        deps = Elf(_read_ko(index[name]), index[name]).modinfo().get("depends", [""])[0]
        for dep in filter(None, deps.split(",")):
            visit(dep.replace("-", "_"), (*chain, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order, index, builtin_wanted


def _read_ko(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        raise BuildError(f"{path}: zstd-compressed modules are not supported by the builder")
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


class _Cpio:
    """newc writer (what the kernel unpacks as initramfs); no cpio binary needed."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0,
                                                      len(nameb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nameb)
        self.buf.write(b"\0" * ((4 - (110 + len(nameb)) % 4) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * ((4 - len(data) % 4) % 4))

    def mkdir(self, path: str) -> None:
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        self.mkdir(os.path.dirname(path))
        self.dirs.add(path)
        self._entry(path, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self.mkdir(os.path.dirname(path))
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self.mkdir(os.path.dirname(path))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        data = self.buf.getvalue()
        return data + b"\0" * ((512 - len(data) % 512) % 512)


@contextlib.contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _file_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def build_assets(cache_dir: str, rebuild: bool = False, log=None) -> GuestAssets:
    """Kernel + initramfs of the lab guest, built once and cached in cache_dir (see module doc)."""
    cache_dir = os.path.abspath(cache_dir)
    out_dir = os.path.join(cache_dir, "guest")
    manifest_path = os.path.join(out_dir, "manifest.json")
    init_sha = hashlib.sha256((_init_script() + SHUTDOWN_SCRIPT).encode()).hexdigest()
    say = log or (lambda _msg: None)
    with _locked(os.path.join(cache_dir, ".build.lock")):
        if not rebuild and os.path.exists(manifest_path):
            with open(manifest_path) as fh:
                man = json.load(fh)
            if (man.get("builder_version") == BUILDER_VERSION and man.get("init_sha256") == init_sha
                    and os.path.exists(man.get("kernel", "")) and os.path.exists(man.get("initrd", ""))):
                return GuestAssets(man["kernel"], man["initrd"], man.get("kernel_version", ""))
        started = time.monotonic()
        missing = [c for c in missing_host_commands() if not c.startswith(("mkfs.ext4", "debugfs"))]
        if missing:
            raise BuildError("the guest builder needs: " + ", ".join(missing))
        kpkg = _kernel_package()
        libs = _library_packages("qemu-guest-agent")
        packages = [kpkg, *GUEST_PACKAGES, *libs]
        say(f"packages: {', '.join(packages)}")
        debs = _download(os.path.join(cache_dir, "debs"), packages)
        with tempfile.TemporaryDirectory(prefix="kvmsnap-guest-build-") as tmp:
            kroot = os.path.join(tmp, "kernel")
            uroot = os.path.join(tmp, "user")
            _run(["dpkg-deb", "-x", debs[kpkg], kroot])
            for pkg in (*GUEST_PACKAGES, *libs):
                _run(["dpkg-deb", "-x", debs[pkg], uroot])
            kvers = os.listdir(os.path.join(kroot, "lib", "modules"))
            if len(kvers) != 1:
                raise BuildError(f"{kpkg}: expected one module tree, found {kvers}")
            kver = kvers[0]
            vmlinuz = glob.glob(os.path.join(kroot, "boot", "vmlinuz-*"))[0]
            order, index, builtin = _module_order(kroot, kver, WANTED_MODULES)
            say(f"kernel {kver}: modules {order}; built in: {builtin}")

            cpio = _Cpio()
            for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "data", "etc",
                      "var", "lib/modules", "lib/x86_64-linux-gnu", "lib64", "root"):
                cpio.mkdir(d)
            cpio.symlink("var/run", "/run")
            cpio.file("bin/busybox", _file_bytes(_resolve_in_root(uroot, "/bin/busybox")), 0o755)
            cpio.symlink("bin/sh", "busybox")
            cpio.file("init", _init_script().encode(), 0o755)
            cpio.file("sbin/shutdown", SHUTDOWN_SCRIPT.encode(), 0o755)
            cpio.file("etc/modules.order", "".join(m + "\n" for m in order).encode())
            for name in order:
                cpio.file(f"lib/modules/{name}.ko", _read_ko(index[name]))
            qga = "/usr/sbin/qemu-ga"
            interp, closure = _library_closure(uroot, qga)
            cpio.file("usr/sbin/qemu-ga", _file_bytes(_resolve_in_root(uroot, qga)), 0o755)
            for soname, path in sorted(closure.items()):
                if soname == "__interp__":
                    continue
                cpio.file(f"lib/x86_64-linux-gnu/{soname}", _file_bytes(path), 0o755)
            cpio.file(interp, _file_bytes(closure["__interp__"]), 0o755)
            cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
            cpio.file("etc/group", b"root:x:0:\n")
            image = gzip.compress(cpio.finish(), compresslevel=6, mtime=0)

            tmp_out = tempfile.mkdtemp(prefix=".guest-", dir=cache_dir)
            shutil.copyfile(vmlinuz, os.path.join(tmp_out, "vmlinuz"))
            with open(os.path.join(tmp_out, "initrd.img"), "wb") as fh:
                fh.write(image)
            man = {
                "builder_version": BUILDER_VERSION,
                "init_sha256": init_sha,
                "kernel_version": kver,
                "kernel": os.path.join(out_dir, "vmlinuz"),
                "initrd": os.path.join(out_dir, "initrd.img"),
                "modules": order,
                "builtin": builtin,
                "libraries": sorted(k for k in closure if k != "__interp__"),
                "packages": {p: os.path.basename(debs[p]) for p in packages},
                "initrd_bytes": len(image),
                "build_seconds": round(time.monotonic() - started, 1),
            }
            with open(os.path.join(tmp_out, "manifest.json"), "w") as fh:
                json.dump(man, fh, indent=1)
            if os.path.exists(out_dir):
                shutil.rmtree(out_dir)
            os.rename(tmp_out, out_dir)
            os.chmod(out_dir, 0o755)
        say(f"built {man['initrd']} ({len(image)} bytes) in {man['build_seconds']} s")
        return GuestAssets(man["kernel"], man["initrd"], kver)
