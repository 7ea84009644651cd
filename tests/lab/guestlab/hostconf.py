"""Lab host configuration for libvirt's QEMU driver (idempotent).

Lab disks live in root-owned temp dirs (and in the ONTAP simulator's volume directories), which
QEMU running as libvirt-qemu cannot open. In the lab only, QEMU runs as root without a security
driver. The block is marked, so it is replaced (never duplicated) and can be removed by hand.
"""

from __future__ import annotations

import os
import re

QEMU_CONF = "/etc/libvirt/qemu.conf"
BEGIN = "# BEGIN kvmsnap lab (tests/lab/guest-builder configure-host)"
END = "# END kvmsnap lab"
SETTINGS = (
    'user = "root"',
    'group = "root"',
    "dynamic_ownership = 0",
    'security_driver = "none"',
)


def desired_block() -> str:
    return "\n".join((BEGIN, "# QEMU runs as root without sVirt so lab disks in root-owned temp dirs work.",
                      *SETTINGS, END)) + "\n"


def configure_qemu_conf(path: str = QEMU_CONF) -> bool:
    """Make qemu.conf carry the lab block; True when the file changed (libvirtd must restart)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    block = desired_block()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        new = pattern.sub(lambda _m: block, text, count=1)
    else:
        # the same keys set elsewhere (uncommented) would fight ours: comment them out
        lines = []
        keys = {s.split("=", maxsplit=1)[0].strip() for s in SETTINGS}
        for line in text.splitlines(keepends=True):
            key = line.split("=", maxsplit=1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
            lines.append("# (kvmsnap lab) " + line if key in keys else line)
        new = "".join(lines)
        if new and not new.endswith("\n"):
            new += "\n"
        new += block
    if new == text:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".kvmsnap-tmp"
    with open(tmp, "w") as fh:
        fh.write(new)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True
