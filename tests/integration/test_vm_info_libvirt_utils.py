"""module_utils/_libvirt: lookup rules, state names, bounded retries and reconnects (test driver)."""

from __future__ import annotations

import guestlab
import libvirt
import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _libvirt


@pytest.fixture
def conn(tmp_path):
    specs = guestlab.make_test_domains(6, str(tmp_path / "ds"))
    # a VM whose *name* is another VM's UUID: lookups must go strictly by the form
    specs.append(dict(specs[0], name=specs[1]["uuid"], uuid="0d0d0d0d-0000-4000-8000-000000000001"))
    specs.append(dict(specs[0], name="$(id); `x` -v ..y", uuid="0d0d0d0d-0000-4000-8000-000000000002"))
    c = _libvirt.open_connection(guestlab.write_test_node(str(tmp_path / "n.xml"), specs))
    yield c
    c.close()


def test_lookup_by_uuid_form_is_strict(conn):
    uuid1 = "00000000-0000-0000-0000-000000000002"
    assert _libvirt.lookup_domain(conn, uuid1).name() == "vm0001"          # by UUID, not the VM named so
    assert _libvirt.lookup_domain(conn, uuid1, kind="name").UUIDString() == "0d0d0d0d-0000-4000-8000-000000000001"
    assert _libvirt.lookup_domain(conn, uuid1.replace("-", "")).name() == "vm0001"
    with pytest.raises(_libvirt.DomainNotFound) as err:
        _libvirt.lookup_domain(conn, "vm0001", kind="uuid")
    assert err.value.kind.startswith("uuid")


def test_opaque_names(conn):
    assert _libvirt.lookup_domain(conn, "$(id); `x` -v ..y").UUIDString() == "0d0d0d0d-0000-4000-8000-000000000002"
    with pytest.raises(_libvirt.DomainNotFound, match="no domain with name"):
        _libvirt.lookup_domain(conn, "nope")
    with pytest.raises(_libvirt.DomainNotFound):
        _libvirt.lookup_domain(conn, "")


def test_state_names(conn):
    assert _libvirt.domain_state(_libvirt.lookup_domain(conn, "vm0000")) == "running"
    assert _libvirt.domain_state(_libvirt.lookup_domain(conn, "vm0001")) == "paused"
    assert _libvirt.domain_state(_libvirt.lookup_domain(conn, "vm0002")) == "shutoff"
    assert _libvirt.state_name(7) == "pmsuspended" and _libvirt.state_name(99) == "unknown"
    assert _libvirt.state_name(None) == "unknown" and _libvirt.paused_reason(1) == "user"
    assert _libvirt.is_uuid("00000000-0000-0000-0000-000000000002") and not _libvirt.is_uuid("vm0001")


def _rpc_error(code=_libvirt.VIR_ERR_RPC, msg="End of file while reading data: Input/output error"):
    err = libvirt.libvirtError(msg)
    err.err = (code, _libvirt.VIR_FROM_RPC, msg, 2, "", None, None, -1, -1)
    return err


def test_retrying_reconnects_after_transient_errors(conn, tmp_path):
    opened = []
    uri = conn.getURI()

    def factory():
        opened.append(1)
        return _libvirt.open_connection(uri)

    calls = []

    def fn(c):
        calls.append(c)
        if len(calls) < 3:
            raise _rpc_error()
        return c.lookupByName("vm0000").UUIDString()

    assert _libvirt.retrying(factory, fn, retries=3, delay=0) == "00000000-0000-0000-0000-000000000001"
    assert len(calls) == 3 and len(opened) == 3


def test_retrying_is_bounded_and_keeps_other_errors(conn):
    def always(_c):
        raise _rpc_error(_libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer")

    uri = conn.getURI()
    with pytest.raises(libvirt.libvirtError):
        _libvirt.retrying(lambda: _libvirt.open_connection(uri), always, retries=2, delay=0)
    tried = []

    def not_transient(_c):
        tried.append(1)
        raise _rpc_error(_libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")

    with pytest.raises(libvirt.libvirtError):
        _libvirt.retrying(lambda: _libvirt.open_connection(uri), not_transient, retries=5, delay=0)
    assert tried == [1]
    assert _libvirt.is_transient(_rpc_error()) and not _libvirt.is_transient(ValueError("x"))


def test_session_and_open_errors():
    with _libvirt.LibvirtSession("test:///default") as session:
        assert session.call(lambda c: c.lookupByName("test").name()) == "test"
        first = session.conn
        session.reconnect()
        assert session.conn is not first
    with pytest.raises(_libvirt.LibvirtAccessError) as err:
        _libvirt.open_connection("test:///nonexistent/node.xml", retries=3, delay=0)
    assert "after 1 attempt(s)" in str(err.value) and err.value.transient is False
