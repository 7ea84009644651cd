"""Node XML for libvirt's test driver (``test:///<abs path>``): many domains without a daemon.

``make_test_domains(n, datastore_dir)`` describes n domains whose disks live under
datastore_dir (states cycle running/paused/shutoff, every 10th has a cdrom ISO, every 5th an
agent channel, every 7th is transient, every 3rd has an NVRAM file and a second data disk with a
backing file); ``write_test_node(path, domains)`` writes the XML; open it with
``libvirt.openReadOnly('test://' + path)``.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from xml.sax.saxutils import escape, quoteattr

RUNSTATE = {"running": 1, "paused": 3, "shutoff": 5}


def make_test_domains(n: int, datastore_dir: str, prefix: str = "vm", iso_dir: str = "/var/lib/libvirt/images",
                      seed: int = 0) -> list[dict]:
    states = ("running", "paused", "shutoff")
    out = []
    for i in range(n):
        name = f"{prefix}{i:04d}"
        disks = [{"type": "file", "device": "disk", "format": "qcow2", "target": "vda",
                  "path": os.path.join(datastore_dir, name, f"{name}-root.qcow2")}]
        nvram = None
        if i % 3 == 0:
            disks.append({"type": "file", "device": "disk", "format": "qcow2", "target": "vdb",
                          "path": os.path.join(datastore_dir, name, f"{name}-data.qcow2"),
                          "backing": [{"path": os.path.join(datastore_dir, "base", "data-base.qcow2"),
                                       "format": "raw"}]})
            nvram = os.path.join(datastore_dir, name, f"{name}_VARS.fd")
        if i % 10 == 0:
            disks.append({"type": "file", "device": "cdrom", "format": "raw", "target": "hdc", "readonly": True,
                          "path": os.path.join(iso_dir, "install.iso")})
        out.append({
            "name": name,
            "uuid": str(uuidlib.UUID(int=(seed << 64) + i + 1)),
            "state": states[i % 3],
            "transient": i % 7 == 6 and states[i % 3] != "shutoff",
            "agent": i % 5 == 0,
            "nvram": nvram,
            "disks": disks,
        })
    return out


def _disk(d: dict) -> str:
    dtype = d.get("type", "file")
    attr = {"file": "file", "block": "dev"}.get(dtype, "file")
    backing = ""
    for b in reversed(d.get("backing", [])):
        backing = (f"<backingStore type='file'><format type={quoteattr(b.get('format', 'raw'))}/>"
                   f"<source file={quoteattr(b['path'])}/>{backing or '<backingStore/>'}</backingStore>")
    return (f"<disk type={quoteattr(dtype)} device={quoteattr(d.get('device', 'disk'))}>"
            f"<driver name='qemu' type={quoteattr(d.get('format', 'raw'))}/>"
            f"<source {attr}={quoteattr(d['path'])}/>{backing}"
            f"<target dev={quoteattr(d['target'])}/>" + ("<readonly/>" if d.get("readonly") else "") + "</disk>")


def domain_xml(spec: dict) -> str:
    ns = "xmlns:test='http://libvirt.org/schemas/domain/test/1.0'"
    runstate = f"<test:runstate>{RUNSTATE[spec.get('state', 'running')]}</test:runstate>"
    transient = "<test:transient/>" if spec.get("transient") else ""
    loader = ""
    if spec.get("nvram"):
        loader = (f"<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
                  f"<nvram>{escape(spec['nvram'])}</nvram>")
    agent = ("<channel type='unix'><source mode='bind' path='/run/kvs-test.agent'/>"
             "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>") if spec.get("agent") else ""
    return (f"<domain type='test' {ns}><name>{escape(spec['name'])}</name><uuid>{spec['uuid']}</uuid>"
            f"<memory unit='MiB'>64</memory><os><type>hvm</type>{loader}</os>"
            f"<devices>{''.join(_disk(d) for d in spec.get('disks', []))}{agent}</devices>"
            f"{runstate}{transient}</domain>")


def write_test_node(path: str, domains: list[dict]) -> str:
    """Write a test-driver node file with these domains; returns the URI ``test://<abs path>``."""
    path = os.path.abspath(path)
    with open(path, "w") as fh:
        fh.write("<node>\n")
        for spec in domains:
            fh.write(domain_xml(spec))
            fh.write("\n")
        fh.write("</node>\n")
    return "test://" + path
