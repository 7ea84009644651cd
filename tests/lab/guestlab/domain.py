"""Domain XML and life cycle for lab guests (real kernel guests and minimal boot-sector guests)."""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from xml.sax.saxutils import escape, quoteattr

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # the builder itself (guest-builder build) needs no libvirt-python
    libvirt = None
    libvirt_qemu = None
else:
    # libvirt prints every error to stderr by default; polling the agent would flood the output
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

from .build import AGENT_PORT_NAME, GuestAssets

TB_CACHE_MIB = 32
_LOG_DIR: str | None = None


class GuestError(RuntimeError):
    pass


def run_prefix() -> str:
    """Name prefix unique to this process: every lab domain of a test run starts with it."""
    return f"kvs-{os.getpid()}-"


def console_log_dir() -> str:
    """A private directory (per process) for the guests' serial console logs."""
    global _LOG_DIR
    if _LOG_DIR is None or not os.path.isdir(_LOG_DIR):
        _LOG_DIR = tempfile.mkdtemp(prefix="kvmsnap-guestlab-logs-")
        os.chmod(_LOG_DIR, 0o755)
    return _LOG_DIR


def console_log_path(name: str) -> str:
    return os.path.join(console_log_dir(), f"{name}.console.log")


def host_has_kvm() -> bool:
    """True only where /dev/kvm is real hardware virtualisation (vmx/svm), not e.g. PVM.

    ``KVMSNAP_LAB_DOMAIN_TYPE=qemu|kvm`` overrides the detection.
    """
    forced = os.environ.get("KVMSNAP_LAB_DOMAIN_TYPE")
    if forced in ("qemu", "kvm"):
        return forced == "kvm"
    if not os.path.exists("/dev/kvm"):
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"vmx", "svm"})
    except OSError:
        return False
    return False


def domain_type() -> str:
    return "kvm" if host_has_kvm() else "qemu"


def _disk_xml(path: str, target: str, fmt: str = "raw", bus: str = "virtio", readonly: bool = False) -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type={quoteattr(fmt)}/>"
            f"<source file={quoteattr(path)}/><target dev={quoteattr(target)} bus={quoteattr(bus)}/>"
            + ("<readonly/>" if readonly else "") + "</disk>")


def _fmt_of(path: str) -> str:
    return "qcow2" if path.endswith(".qcow2") else "raw"


def guest_xml(name: str, disk_path: str, assets: GuestAssets, memory_mib: int = 128, with_agent: bool = True,
              extra_disks: tuple[str, ...] | list[str] = (), console_log: str | None = None,
              uuid: str | None = None, dom_type: str | None = None) -> str:
    """Domain XML of a lab guest: direct kernel boot, data disk vda (+ vdb, ...), agent channel."""
    dtype = dom_type or domain_type()
    disks = [_disk_xml(os.path.abspath(disk_path), "vda", _fmt_of(disk_path))]
    for i, extra in enumerate(extra_disks):
        disks.append(_disk_xml(os.path.abspath(extra), "vd" + chr(ord("b") + i), _fmt_of(extra)))
    features = "<acpi/>"
    if dtype == "qemu":
        features += f"<tcg><tb-cache unit='MiB'>{TB_CACHE_MIB}</tb-cache></tcg>"
    log = console_log or console_log_path(name)
    agent = (f"<channel type='unix'><target type='virtio' name='{AGENT_PORT_NAME}'/></channel>"
             if with_agent else "")
    return f"""<domain type='{dtype}'>
  <name>{escape(name)}</name>
  <uuid>{uuid or uuidlib.uuid4()}</uuid>
  <description>kvmsnap lab guest (tests/lab/guestlab)</description>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(assets.kernel)}</kernel>
    <initrd>{escape(assets.initrd)}</initrd>
    <cmdline>{escape(assets.cmdline)}</cmdline>
  </os>
  <features>{features}</features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {''.join(disks)}
    <controller type='usb' model='none'/>
    <serial type='file'><source path={quoteattr(log)}/><target port='0'/></serial>
    {agent}
    <memballoon model='none'/>
  </devices>
</domain>
"""


BOOT_SECTOR_CODE = bytes([0xFA, 0xF4, 0xEB, 0xFD])  # cli; hlt; jmp $-1 (back to hlt)


def make_boot_sector(path: str, size: int = 512) -> str:
    """A raw disk whose MBR only does cli;hlt: the guest halts at once and costs (almost) no CPU."""
    sector = bytearray(512)
    sector[:len(BOOT_SECTOR_CODE)] = BOOT_SECTOR_CODE
    sector[510:512] = b"\x55\xaa"
    with open(path, "wb") as fh:
        fh.write(bytes(sector))
        if size > 512:
            fh.truncate(size)
    return path


def minimal_guest_xml(name: str, boot_disk: str, memory_mib: int = 16, uuid: str | None = None,
                      dom_type: str | None = None, with_agent: bool = False) -> str:
    dtype = dom_type or domain_type()
    features = "<acpi/>" + ("<tcg><tb-cache unit='MiB'>1</tb-cache></tcg>" if dtype == "qemu" else "")
    agent = (f"<channel type='unix'><target type='virtio' name='{AGENT_PORT_NAME}'/></channel>"
             if with_agent else "")
    return f"""<domain type='{dtype}'>
  <name>{escape(name)}</name>
  <uuid>{uuid or uuidlib.uuid4()}</uuid>
  <description>kvmsnap lab minimal guest (boot sector cli;hlt)</description>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features>{features}</features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {_disk_xml(os.path.abspath(boot_disk), 'hda', 'raw', bus='ide')}
    <controller type='usb' model='none'/>
    {agent}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _create(conn, xml: str, transient: bool, start: bool):
    if transient:
        return conn.createXML(xml, 0)
    dom = conn.defineXML(xml)
    if start:
        try:
            dom.create()
        except Exception:
            destroy_and_undefine(dom)
            raise
    return dom


def define_guest(conn, name: str, disk_path: str, assets: GuestAssets, memory_mib: int = 128,
                 with_agent: bool = True, transient: bool = False, start: bool = True,
                 extra_disks: tuple[str, ...] | list[str] = (), console_log: str | None = None):
    """Define (persistent) or create (transient) a lab guest and start it; returns the virDomain."""
    xml = guest_xml(name, disk_path, assets, memory_mib, with_agent, extra_disks, console_log)
    return _create(conn, xml, transient, start)


def define_minimal_guest(conn, name: str, workdir: str, memory_mib: int = 16, transient: bool = False,
                         start: bool = True, with_agent: bool = False):
    """A boot-sector guest (cli;hlt) with its disk <workdir>/<name>.img; for scale tests."""
    os.makedirs(workdir, exist_ok=True)
    disk = make_boot_sector(os.path.join(workdir, f"{name}.img"))
    return _create(conn, minimal_guest_xml(name, disk, memory_mib, with_agent=with_agent), transient, start)


def agent_command(dom, command: str, arguments: dict | None = None, timeout: int = 10):
    """Run one guest-agent command through libvirt; returns its 'return' value."""
    payload = {"execute": command}
    if arguments is not None:
        payload["arguments"] = arguments
    out = libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), timeout, 0)
    return json.loads(out).get("return")


def console_tail(name: str, lines: int = 30) -> str:
    try:
        with open(console_log_path(name), errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no console log)"


def wait_agent_ready(dom, timeout: float = 60) -> float:
    """Wait until guest-ping answers; returns the seconds waited. Fails fast if the domain stops."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        try:
            if not _is_active(dom):
                raise GuestError(f"lab guest {_safe_name(dom)} stopped while waiting for its agent; console:\n"
                                 + console_tail(_safe_name(dom)))
            agent_command(dom, "guest-ping", timeout=2)
            return time.monotonic() - started
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestError(f"lab guest is gone while waiting for its agent ({err}); console:\n"
                                 + console_tail(_safe_name(dom))) from None
            last = err
            time.sleep(0.25)
    raise GuestError(f"lab guest {dom.name()}: agent not ready after {timeout} s ({last}); console:\n"
                     + console_tail(dom.name()))


def read_guest_file(dom, path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes:
    """Read a file inside the guest through qemu-ga (guest-file-open/read/close)."""
    handle = agent_command(dom, "guest-file-open", {"path": path, "mode": "r"})
    data = bytearray()
    try:
        while len(data) < max_bytes:
            chunk = agent_command(dom, "guest-file-read", {"handle": handle, "count": 1024 * 1024})
            data += base64.b64decode(chunk.get("buf-b64", ""))
            if chunk.get("eof") or not chunk.get("count"):
                break
    finally:
        agent_command(dom, "guest-file-close", {"handle": handle})
    return bytes(data)


def guest_exec(dom, argv: list[str], timeout: float = 30) -> dict:
    """Run a command in the guest (guest-exec), wait for it; returns {exitcode, out, err}."""
    pid = agent_command(dom, "guest-exec", {"path": argv[0], "arg": list(argv[1:]), "capture-output": True})["pid"]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        st = agent_command(dom, "guest-exec-status", {"pid": pid})
        if st.get("exited"):
            return {"exitcode": st.get("exitcode"),
                    "out": base64.b64decode(st.get("out-data", "")).decode(errors="replace"),
                    "err": base64.b64decode(st.get("err-data", "")).decode(errors="replace")}
        time.sleep(0.1)
    raise GuestError(f"{dom.name()}: {argv} did not finish in {timeout} s")


def shutdown_guest(dom, timeout: float = 30) -> None:
    """Clean power-off through the agent (the writer stops, /data is unmounted first)."""
    try:
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
    except libvirt.libvirtError:
        if not _is_active(dom):
            return
        raise
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not _is_active(dom):
            return
        time.sleep(0.2)
    raise GuestError(f"{dom.name()} did not power off within {timeout} s")


def _is_active(dom) -> bool:
    """isActive() that treats a vanished (transient, stopped) domain as inactive."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise


def _safe_name(dom) -> str:
    try:
        return dom.name()
    except Exception:
        return "?"


def destroy_and_undefine(dom) -> None:
    """Stop (hard) and remove a lab domain; never raises for a domain that is already gone."""
    if dom is None:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        if dom.isPersistent():
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                     | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
            dom.undefineFlags(flags)
    except libvirt.libvirtError:
        pass


def destroy_all(doms) -> None:
    """destroy_and_undefine for each of DOMS, all at once: libvirtd takes ~2 s to stop one QEMU (mostly waiting for it
    to exit), and stops several side by side in about the same time."""
    doms = [dom for dom in doms if dom is not None]
    if len(doms) < 2:
        for dom in doms:
            destroy_and_undefine(dom)
        return
    with ThreadPoolExecutor(max_workers=min(len(doms), 8)) as pool:
        list(pool.map(destroy_and_undefine, doms))


def cleanup_prefix(conn, prefix: str) -> list[str]:
    """Destroy and undefine every domain whose name starts with prefix; returns their names."""
    doms = {dom.name(): dom for dom in conn.listAllDomains(0) if dom.name().startswith(prefix)}
    destroy_all(doms.values())
    return list(doms)


_PREFIX_RE = re.compile(r"^kvs-(\d+)-")


def cleanup_stale(conn) -> list[str]:
    """Remove lab domains (kvs-<pid>-...) whose test run (pid) is gone; returns their names."""
    doms = {}
    for dom in conn.listAllDomains(0):
        m = _PREFIX_RE.match(dom.name())
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            doms[dom.name()] = dom
    destroy_all(doms.values())
    return list(doms)
