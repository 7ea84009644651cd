"""A lab CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost), made with the
openssl CLI once and reused on later starts so clients can keep trusting DIR/ca.pem."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

DAYS = "3650"


def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {res.stderr.strip()}")


def ensure_certs(data_dir: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) in DATA_DIR, created when missing."""
    ca, ca_key = data_dir / "ca.pem", data_dir / "ca.key"
    cert, key = data_dir / "server.pem", data_dir / "server.key"
    if ca.exists() and cert.exists() and key.exists():
        return ca, cert, key
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if not (ca.exists() and ca_key.exists()):
            _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", str(ca_key), "-out", str(ca), "-days", DAYS, "-subj", "/CN=ontap-sim lab CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", "subjectKeyIdentifier=hash")
        csr = t / "server.csr"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
        ext = t / "ext.cnf"
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "subjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", DAYS, "-extfile", str(ext), "-sha256")
        srl = data_dir / "ca.srl"
        if srl.exists():
            srl.unlink()
    for p in (ca_key, key):
        p.chmod(0o600)
    return ca, cert, key


def issue_client_cert(data_dir: Path, user: str) -> tuple[Path, Path]:
    """A client certificate (CN=<user>, signed by the lab CA) for certificate authentication,
    as ONTAP maps a certificate's common name to a cluster user."""
    if not user or not all(c.isalnum() or c in "._-" for c in user):
        raise ValueError(f"invalid user name {user!r}")
    out = data_dir / "clients"
    out.mkdir(exist_ok=True)
    cert, key = out / f"{user}.pem", out / f"{user}.key"
    if cert.exists() and key.exists():
        return cert, key
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        csr = t / "client.csr"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={user}")
        ext = t / "ext.cnf"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(data_dir / "ca.pem"), "-CAkey",
                 str(data_dir / "ca.key"), "-CAcreateserial", "-CAserial", str(t / "ca.srl"),
                 "-out", str(cert), "-days", DAYS, "-extfile", str(ext), "-sha256")
    key.chmod(0o600)
    return cert, key
