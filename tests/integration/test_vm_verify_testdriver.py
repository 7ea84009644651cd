"""vm_verify's network rule against libvirt's test driver (in-process, no daemon): only an active network without
<forward> is accepted for the copies; a forwarding one, an inactive one and a missing one are refused by name."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._verify_boot import VerifyBootError, check_network

ISOLATED = ("<network><name>verifynet</name><bridge name='virbr-vfy'/>"
            "<ip address='192.168.251.1' netmask='255.255.255.0'/></network>")


def test_only_an_active_isolated_network_is_accepted():
    conn = libvirt.open("test:///default")
    try:
        check_network(conn, None)  # no network: nothing to check
        with pytest.raises(VerifyBootError, match="network 'default' forwards to the host's networks"):
            check_network(conn, "default")  # the test driver's default network is NAT
        with pytest.raises(VerifyBootError, match="libvirt network 'nosuch' not found"):
            check_network(conn, "nosuch")
        net = conn.networkDefineXML(ISOLATED)
        with pytest.raises(VerifyBootError, match="libvirt network 'verifynet' is not active"):
            check_network(conn, "verifynet")
        net.create()
        check_network(conn, "verifynet")
    finally:
        conn.close()
