"""ONTAP option validation, restore path confinement, error texts, time parsing (pure logic)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_args import (
    ONTAP_CONNECTION_ARGS,
    OptionError,
    parse_volumes,
    validate_connection,
    validate_hostname,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_errors import OntapError, redact
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_interface import (
    duration_to_seconds,
    epoch_to_iso,
    iso_to_epoch,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_paths import (
    PathError,
    lun_full_path,
    normalize_paths,
    normalize_volume_path,
)


def test_connection_args_contract():
    assert set(ONTAP_CONNECTION_ARGS) == {"hostname", "port", "username", "password", "cert_file", "key_file",
                                          "validate_certs", "ca_path", "transport", "timeout", "retries"}
    assert ONTAP_CONNECTION_ARGS["password"]["no_log"] is True
    assert ONTAP_CONNECTION_ARGS["validate_certs"]["default"] is True
    assert ONTAP_CONNECTION_ARGS["transport"]["default"] == "rest"
    for name, spec in ONTAP_CONNECTION_ARGS.items():
        assert spec["fallback"][1] == ["KVMSNAP_ONTAP_%s" % name.upper()]


@pytest.mark.parametrize("host", ["cluster1", "c1.example.com", "10.0.0.1", "fe80::1", "[fe80::1]"])
def test_good_hostnames(host):
    assert validate_hostname(host) == host.strip("[]")


@pytest.mark.parametrize("host,needle", [
    ("https://c1:443/api", "looks like a URL"), ("c1/api", "looks like a URL"), (" c1", "whitespace"),
    ("c1 ", "whitespace"), ("c 1", "whitespace"), ("c1:443", "port option"), ("user@c1", "'@'"),
    ("", "required"), ("c1..x", "not a valid host name"), ("-c1", "not a valid host name"),
])
def test_bad_hostnames(host, needle):
    with pytest.raises(OptionError) as err:
        validate_hostname(host)
    assert str(err.value).startswith("hostname:")
    assert needle in str(err.value)


def base(**kw):
    p = {"hostname": "c1", "username": "admin", "password": "pw", "port": None, "cert_file": None, "key_file": None,
         "validate_certs": True, "ca_path": None, "transport": "rest", "timeout": 60, "retries": 3}
    p.update(kw)
    return p


def test_validate_connection(tmp_path):
    assert validate_connection(base())["hostname"] == "c1"
    with pytest.raises(OptionError, match="timeout"):
        validate_connection(base(timeout=0))
    with pytest.raises(OptionError, match="retries"):
        validate_connection(base(retries=99))
    with pytest.raises(OptionError, match="port"):
        validate_connection(base(port=70000))
    with pytest.raises(OptionError, match="mutually exclusive"):
        validate_connection(base(cert_file="/x", key_file="/y"))
    with pytest.raises(OptionError, match="ca_path"):
        validate_connection(base(ca_path=str(tmp_path / "missing.pem")))
    cert = tmp_path / "c.pem"
    key = tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    os.chmod(key, 0o644)
    with pytest.raises(OptionError, match="chmod 600"):
        validate_connection(base(password=None, cert_file=str(cert), key_file=str(key)))
    os.chmod(key, 0o600)
    assert validate_connection(base(password=None, cert_file=str(cert), key_file=str(key)))


def test_parse_volumes():
    assert parse_volumes(["a", "svm2:b"], "svm1") == [("svm1", "a"), ("svm2", "b")]
    with pytest.raises(OptionError, match="entry 1 .* has no SVM"):
        parse_volumes(["a"], None)
    with pytest.raises(OptionError, match="entry 2 is empty"):
        parse_volumes(["a", ""], "s")
    with pytest.raises(OptionError, match="given twice"):
        parse_volumes(["a", "s:a"], "s")
    with pytest.raises(OptionError, match="entry 1"):
        parse_volumes(["s:a:b"], None)
    with pytest.raises(OptionError, match="invalid volume name"):
        parse_volumes(["vol;rm"], "s")
    with pytest.raises(OptionError):
        parse_volumes([], "s")


@pytest.mark.parametrize("path,expected", [
    ("images/vm1.qcow2", "/images/vm1.qcow2"), ("/images/vm1.qcow2", "/images/vm1.qcow2"),
    ("./images//vm1.qcow2", "/images/vm1.qcow2"), ("/vol/vol_ds1/images/a", "/images/a"),
    ("with space/ok", "/with space/ok"),
])
def test_paths_ok(path, expected):
    assert normalize_volume_path(path, "vol_ds1") == expected


@pytest.mark.parametrize("path,needle", [
    ("../etc/passwd", "'..'"), ("a/../../b", "'..'"), ("/vol/other/a", "outside volume"), ("a\x00b", "NUL"),
    (".snapshot/s1/a", ".snapshot"), ("a/.SNAPSHOT/x", ".snapshot"), ("", "empty"), ("/", "volume root"),
    ("/vol/vol_ds1", "volume root"), ("a\nb", "control"),
])
def test_paths_refused_with_index(path, needle):
    with pytest.raises(PathError) as err:
        normalize_paths(["ok", path], "vol_ds1")
    assert str(err.value).startswith("files[1]:")
    assert needle in str(err.value)


def test_duplicate_paths_and_luns():
    with pytest.raises(PathError, match=r"files\[1\].*files\[0\]"):
        normalize_paths(["a/b", "/a/b"], "v")
    assert lun_full_path("lun1", "v") == "/vol/v/lun1"
    assert lun_full_path("/vol/v/q/lun1", "v") == "/vol/v/q/lun1"


def test_error_text_and_kinds():
    err = OntapError("entry doesn't exist", status=404, code="4", operation="delete snapshot s on svm1:v",
                     hostname="c1")
    text = str(err)
    assert text.startswith("c1: delete snapshot s on svm1:v failed: entry doesn't exist (code 4, HTTP 404).")
    assert err.is_not_found and not err.is_auth
    assert OntapError("x", status=401).is_auth
    assert "username and password" in str(OntapError("x", status=401))
    assert OntapError("x", code="13003").is_forbidden
    assert "role" in str(OntapError("x", status=403))
    assert OntapError("x", code="1638555").is_busy and OntapError("x", code="13024").is_busy
    assert OntapError("x", status=409, code="1").is_exists and OntapError("x", code="13020").is_exists
    assert OntapError("RPC", code="65552").is_transient
    assert OntapError("Volume is temporarily locked").is_transient


def test_redact():
    assert "s3cret" not in redact("Authorization: Basic YWRtaW46czNjcmV0 and s3cret", ["s3cret"])
    assert "pw" not in redact("https://admin:pw@host/api")


def test_times():
    assert iso_to_epoch("2021-06-10T17:24:41-04:00") == 1623360281
    assert iso_to_epoch("2021-06-10T21:24:41Z") == 1623360281
    assert iso_to_epoch("2021-06-10T21:24:41+0000") == 1623360281
    assert iso_to_epoch("1623360281") == 1623360281
    assert iso_to_epoch(None) is None
    assert epoch_to_iso(1623360281) == "2021-06-10T21:24:41Z"
    assert duration_to_seconds("PT8H35M42S") == 30942
    assert duration_to_seconds("P1DT1S") == 86401
    assert duration_to_seconds("120") == 120
    assert duration_to_seconds("junk") is None


def test_transport_errors_are_classified():
    import socket
    import ssl
    from urllib.error import URLError

    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_http import transport_error

    refused = transport_error(URLError(ConnectionRefusedError(111, "refused")), "c1", 443)
    assert refused.is_transient and "refused" in str(refused) and "c1:443" in str(refused)
    reset = transport_error(URLError(ConnectionResetError(104, "reset")), "c1", 443)
    assert reset.is_transient
    timeout = transport_error(URLError(socket.timeout("timed out")), "c1", 443)
    assert timeout.is_transient and "timeout" in str(timeout)
    tls = transport_error(URLError(ssl.SSLCertVerificationError("CERTIFICATE_VERIFY_FAILED")), "c1", 443)
    assert not tls.is_transient and "ca_path" in str(tls)
    dns = transport_error(URLError(socket.gaierror(-2, "Name or service not known")), "nohost", 443)
    assert not dns.is_transient and "hostname" in str(dns)
