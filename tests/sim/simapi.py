"""Small stdlib clients for the simulator tests: REST (urllib + the sim's CA), admin, ZAPI."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from netapp_lib.api.zapi import zapi


class Reply:
    def __init__(self, status: int, body: Any, headers: Any) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class Client:
    def __init__(self, sim: Any, user: str = "admin", password: str = "netapp123",
                 cert: tuple[str, str] | None = None) -> None:
        self.sim = sim
        self.url = sim.url
        self.user = user
        self.password = password
        self.ctx = ssl.create_default_context(cafile=sim.ca_file)
        self.cert = cert
        if cert:  # certificate authentication: no Authorization header
            self.ctx.load_cert_chain(*cert)

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | str | None = None,
             headers: dict[str, str] | None = None, auth: bool = True) -> Reply:
        url = self.url + path
        if query:
            url += "?" + (query if isinstance(query, str) else urllib.parse.urlencode(query, safe="*,.!|:/"))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/hal+json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and not self.cert:
            import base64
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                raw = resp.read()
                return Reply(resp.status, json.loads(raw) if raw else None, resp.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode(errors="replace")
            return Reply(exc.code, payload, exc.headers)

    def get(self, path: str, **query: Any) -> Reply:
        return self.call("GET", path, query={k.replace("__", "."): v for k, v in query.items()} or None)

    def post(self, path: str, body: Any = None, query: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, body if body is not None else {}, query, **kw)

    def patch(self, path: str, body: Any = None, query: Any = None, **kw: Any) -> Reply:
        return self.call("PATCH", path, body if body is not None else {}, query, **kw)

    def delete(self, path: str, query: Any = None, **kw: Any) -> Reply:
        return self.call("DELETE", path, None, query, **kw)

    # -- conveniences ------------------------------------------------------------------------
    def volume(self, name: str, svm: str = "svm1") -> dict[str, Any]:
        recs = self.get("/api/storage/volumes", name=name, svm__name=svm, fields="*")["records"]
        assert len(recs) == 1, recs
        return recs[0]

    def snapshots(self, vol_uuid: str, **query: Any) -> list[dict[str, Any]]:
        return self.get(f"/api/storage/volumes/{vol_uuid}/snapshots", fields="*", **query)["records"]

    def create_snapshot(self, vol_uuid: str, name: str, **extra: Any) -> Reply:
        return self.post(f"/api/storage/volumes/{vol_uuid}/snapshots", {"name": name, **extra},
                         query={"return_timeout": 30})

    def job(self, reply: Reply) -> dict[str, Any]:
        href = reply["job"]["_links"]["self"]["href"]
        return self.get(href).body

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        r = self.call(method, "/_sim/" + path, body)
        assert r.status in (200, 201), r
        return r.body

    def calls(self) -> list[dict[str, Any]]:
        return self.admin("GET", "calls")["calls"]


def zapi_server(sim: Any, vserver: str | None = None, user: str = "admin", password: str = "netapp123",
                minor: int = 110) -> zapi.NaServer:
    """A plain netapp-lib NaServer for the simulator (SSL_CERT_FILE must name sim.ca_file)."""
    server = zapi.NaServer(sim.host, username=user, password=password)
    server.set_transport_type("HTTPS")
    server.set_port(sim.port)  # after set_transport_type, which resets the port
    server.set_api_version(major=1, minor=minor)
    server.set_timeout(30)
    if vserver:
        server.set_vserver(vserver)
    return server


def zcall(server: zapi.NaServer, api: str, tunnel: bool = True, **children: Any) -> zapi.NaElement:
    return server.invoke_successfully(zapi.NaElement.create_node_with_children(api, **children),
                                      enable_tunneling=tunnel)


def zelem(api: str, struct: dict[str, Any]) -> zapi.NaElement:
    el = zapi.NaElement(api)
    el.translate_struct(struct)
    return el


# A richer cluster: two SVMs, a SAN volume with a LUN, a vault and a mirror relationship,
# users for each restricted role.
LAB_CONFIG: dict[str, Any] = {
    "cluster": {"name": "lab2", "version": "9.13.1"},
    "users": [{"name": "admin", "password": "netapp123", "role": "admin"},
              {"name": "backup", "password": "b", "role": "backup"},
              {"name": "nodelete", "password": "n", "role": "backup_nodelete"},
              {"name": "viewer", "password": "v", "role": "readonly"}],
    "svms": [{"name": "svm1", "lifs": [{"name": "svm1_data1", "address": "127.0.0.1"}]},
             {"name": "svm_dr", "data_lifs": ["127.0.0.2"]}],
    "volumes": [{"name": "vol_ds1", "svm": "svm1", "junction_path": "/vol_ds1", "size": "1G"},
                {"name": "vol_ds2", "svm": "svm1", "junction_path": "/vol_ds2", "size": "1G"},
                {"name": "vol_san", "svm": "svm1", "junction_path": None, "size": "1G"}],
    "luns": [{"path": "/vol/vol_san/lun1", "svm": "svm1", "size": "1M", "serial_number": "D31sh#DQGQUu"}],
    "policies": [{"name": "vault_daily", "type": "vault", "rules": [{"label": "daily", "count": 2}]}],
    "relationships": [{"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_vault", "policy": "vault_daily"},
                      {"source": "svm1:vol_ds2", "destination": "svm_dr:vol_ds2_mirror",
                       "policy": "MirrorAllSnapshots"}],
}


def with_version(version: str) -> dict[str, Any]:
    cfg = dict(LAB_CONFIG)
    cfg["cluster"] = {**LAB_CONFIG["cluster"], "version": version}
    return cfg
