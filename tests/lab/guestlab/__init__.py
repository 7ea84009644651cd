"""guestlab: small real Linux guests (and near-free minimal guests) for the kvmsnap.core lab.

Everything comes from Debian packages (``apt-get download`` + ``dpkg-deb -x``), cached in
``tests/lab/cache/`` (git-ignored). Command line: ``tests/lab/guest-builder --help``.

The real guest
--------------
Debian's cloud kernel, booted directly (no bootloader), and a ~4 MB initramfs with busybox
(static), qemu-guest-agent and its shared libraries (resolved from the ELF DT_NEEDED entries of
the extracted packages, never from the host). Its /init loads the virtio modules in dependency
order (taken from each module's modinfo; built-in ones such as ext4 are skipped), mounts the
first virtio disk (ext4, whole disk) at /data, starts a writer that appends one fsync'ed line
``<n> <epoch>`` to /data/log.txt every 50 ms (continuing the numbering after a restart), and runs
qemu-ga on the virtio port named ``org.qemu.guest_agent.0`` (found via /sys/class/virtio-ports).
``guest-shutdown`` (``shutdownFlags(VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)``) and the ACPI power
button (``dom.shutdown()``; busybox acpid with the button/evdev modules) both stop the writer,
unmount /data and power off (~2-3 s).
A reboot ends the domain (on_reboot=destroy). Domain type ``kvm`` only where /dev/kvm is real
VT-x/AMD-V (cpuinfo vmx/svm), else ``qemu`` (TCG, translation cache 32 MiB);
``KVMSNAP_LAB_DOMAIN_TYPE=qemu|kvm`` overrides. 128 MiB RAM. Serial console goes to
``console_log_path(name)`` (``console_tail(name)`` is in every GuestError).

Host setup: none. The guests run under the lab's own libvirtd (``labd``: a privileged libvirtd + virtlogd
with stock settings in a private mount namespace, so QEMU runs as libvirt-qemu with dynamic ownership, as on
a real host); disks must be where libvirt-qemu can reach them (under the lab dir, 0755). The lab never
edits /etc/libvirt and never touches the host's libvirtd. ``tests/lab/labd start|stop|status|uri|remove``.

Python API (``sys.path.insert(0, 'tests/lab'); import guestlab``)
----------------------------------------------------------------
``build_assets(cache_dir, rebuild=False, log=None) -> GuestAssets(kernel, initrd, kernel_version, cmdline)``
``make_data_disk(path, size_mib=64, label='kvsdata') -> path``      ext4 image (mkfs.ext4 -F)
``read_disk_file(image, path='/log.txt') -> bytes``                 debugfs -R 'cat PATH' (VM stopped!)
``fsck_disk(image) -> (rc, output)``                                e2fsck -fn
``parse_writer_log(data) -> [n, ...]`` / ``writer_log_gaps(numbers) -> [(a, b), ...]``
``define_guest(conn, name, disk_path, assets, memory_mib=128, with_agent=True, transient=False,
               start=True, extra_disks=(), console_log=None) -> virDomain``
``define_minimal_guest(conn, name, workdir, memory_mib=16, transient=False, start=True,
                       with_agent=False) -> virDomain``   boot sector ``cli; hlt`` in <workdir>/<name>.img
``guest_xml(...)`` / ``minimal_guest_xml(...)``                     the XML without defining anything
``wait_agent_ready(dom, timeout=60) -> seconds``                    guest-ping via libvirt_qemu
``agent_command(dom, command, arguments=None, timeout=10)``         -> the agent's 'return'
``read_guest_file(dom, path) -> bytes``                             guest-file-open/read/close
``guest_exec(dom, argv, timeout=30) -> {exitcode, out, err}``
``shutdown_guest(dom, timeout=30)``                                 clean power-off via the agent
``destroy_and_undefine(dom)``                                       never raises for a gone domain
``destroy_all(doms)``                                              the same for several domains, side by side
``cleanup_prefix(conn, prefix) -> [names]``
``cleanup_stale(conn) -> [names]``                                  kvs-<pid>-* of runs that are gone
``run_prefix() -> 'kvs-<pid>-'``                                    name prefix of this test run
``host_has_kvm()`` / ``domain_type()``
``write_test_node(path, domains) / make_test_domains(n, datastore_dir, ...)``   test:/// node XML
``labd.start() -> uri`` / ``labd.stop()`` / ``labd.uri()`` / ``labd.pid_of('libvirtd')`` / ``labd.remove()``

Disks for snapshot tests go where the caller says, e.g. inside the ONTAP simulator's
``DIR/volumes/<svm>/<volume>/``, so snapshots and restores act on the files the guests use.

Measured on the lab machine (2 shared cores, TCG, kernel 6.1.0-56-cloud-amd64): boot to
agent-ready 3.3-5 s (up to ~11 s while the CPU is busy), QEMU RSS ~205-218 MiB per guest, the
writer manages ~15-20 lines/s; initramfs ~3.9 MB, first build ~5 s (cached afterwards).
Minimal guest: ~40 MiB RSS, ~0.2 % of a CPU once halted.
"""

from __future__ import annotations

from .build import AGENT_PORT_NAME, BuildError, GuestAssets, build_assets, missing_host_commands
from .disks import fsck_disk, make_data_disk, parse_writer_log, read_disk_file, writer_log_gaps
from .domain import (
    GuestError,
    agent_command,
    cleanup_prefix,
    cleanup_stale,
    console_log_path,
    console_tail,
    define_guest,
    define_minimal_guest,
    destroy_all,
    destroy_and_undefine,
    domain_type,
    guest_exec,
    guest_xml,
    host_has_kvm,
    make_boot_sector,
    minimal_guest_xml,
    read_guest_file,
    run_prefix,
    shutdown_guest,
    wait_agent_ready,
)
from .testnode import make_test_domains, write_test_node

__all__ = [
    "AGENT_PORT_NAME", "BuildError", "GuestAssets", "GuestError", "agent_command", "build_assets",
    "cleanup_prefix", "cleanup_stale", "console_log_path", "console_tail", "define_guest",
    "define_minimal_guest", "destroy_all", "destroy_and_undefine", "domain_type", "fsck_disk", "guest_exec", "guest_xml",
    "host_has_kvm", "make_boot_sector", "make_data_disk", "make_test_domains", "minimal_guest_xml",
    "missing_host_commands", "parse_writer_log", "read_disk_file", "read_guest_file", "run_prefix",
    "shutdown_guest", "wait_agent_ready", "write_test_node", "writer_log_gaps",
]
