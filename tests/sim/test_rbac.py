"""The simulator's roles as ONTAP lists them (REST privileges, ZAPI command directories) and enforces them."""

from __future__ import annotations

from simapi import Client, zapi_server, zcall, zelem

CUSTOM = {
    "users": [{"name": "admin", "password": "netapp123", "role": "admin"},
              {"name": "viewer", "password": "v", "role": "readonly"},
              {"name": "snapper", "password": "s", "role": "kvmsnap_backup"},
              {"name": "blind", "password": "b", "role": "no_security"}],
    "roles": {"kvmsnap_backup": {"privileges": [
        {"path": "/api/storage/volumes", "access": "readonly"},
        {"path": "/api/storage/volumes/*/snapshots", "access": "all"},
        {"path": "/api/security/accounts", "access": "readonly"},
        {"path": "/api/security/roles", "access": "readonly"}]},
        "no_security": {"privileges": [{"path": "/api", "access": "readonly"},
                                       {"path": "/api/security", "access": "none"}]}},
}


def _privileges(client: Client, user: str) -> tuple[str, list[dict]]:
    acc = client.get("/api/security/accounts", name=user, fields="role,owner")
    assert acc.status == 200, acc
    rec = acc["records"][0]
    priv = client.get("/api/security/roles/%s/%s/privileges" % (rec["owner"]["uuid"], rec["role"]["name"]),
                      fields="access")
    assert priv.status == 200, priv
    return rec["role"]["name"], [{"path": p["path"], "access": p["access"]} for p in priv["records"]]


def test_builtin_roles_list_their_privileges_and_a_readonly_user_gets_403(fast_sim):
    sim = fast_sim(CUSTOM)
    viewer = Client(sim, user="viewer", password="v")
    assert _privileges(viewer, "viewer") == ("readonly", [{"path": "/api", "access": "readonly"}])
    assert _privileges(Client(sim), "admin") == ("admin", [{"path": "/api", "access": "all"}])
    vol = viewer.volume("vol_ds1")
    denied = viewer.create_snapshot(vol["uuid"], "nope")
    assert denied.status == 403 and denied["error"] == {"message": "not authorized for that command", "code": "6"}


def test_custom_rest_role_is_enforced_by_longest_path(fast_sim):
    sim = fast_sim(CUSTOM)
    snapper = Client(sim, user="snapper", password="s")
    role, privs = _privileges(snapper, "snapper")
    assert role == "kvmsnap_backup" and {"path": "/api/storage/volumes/*/snapshots", "access": "all"} in privs
    vol = snapper.volume("vol_ds1")
    assert snapper.create_snapshot(vol["uuid"], "s1").status == 201
    snap = snapper.snapshots(vol["uuid"])[0]
    assert snapper.delete("/api/storage/volumes/%s/snapshots/%s" % (vol["uuid"], snap["uuid"])).status in (200, 202)
    # /api/storage/volumes is readonly: a volume (file) restore is refused
    refused = snapper.patch("/api/storage/volumes/%s" % vol["uuid"], query={"restore_to.snapshot.name": "x"})
    assert refused.status == 403
    # nothing granted on /api/snapmirror (the simulator judges reads as one "read" on /api/storage/volumes)
    assert snapper.post("/api/snapmirror/relationships/x/transfers", {}).status == 403


def test_a_role_without_security_reads_cannot_read_its_account(fast_sim):
    sim = fast_sim(CUSTOM)
    blind = Client(sim, user="blind", password="b")
    assert blind.get("/api/storage/volumes").status == 200
    assert blind.get("/api/security/accounts", name="blind").status == 403


def test_zapi_lists_login_role_and_command_directories(fast_sim, monkeypatch):
    sim = fast_sim(CUSTOM)
    monkeypatch.setenv("SSL_CERT_FILE", sim.ca_file)
    server = zapi_server(sim, user="viewer", password="v")
    res = server.invoke_successfully(zelem("security-login-get-iter", {"query": {"security-login-account-info": {
        "user-name": "viewer", "application": "ontapi"}}}), enable_tunneling=False)
    infos = res.get_child_by_name("attributes-list").get_children()
    assert [(i["user-name"], i["role-name"]) for i in infos] == [("viewer", "readonly")]
    res = server.invoke_successfully(zelem("security-login-role-get-iter", {"query": {"security-login-role-info": {
        "role-name": "kvmsnap_backup"}}, "max-records": "100"}), enable_tunneling=False)
    dirs = {i["command-directory-name"]: i["access-level"]
            for i in res.get_child_by_name("attributes-list").get_children()}
    assert dirs["DEFAULT"] == "readonly" and dirs["volume snapshot create"] == "all"
    assert "volume snapshot restore-file" not in dirs
    tunnel = zapi_server(sim, vserver="svm1", user="viewer", password="v")
    failed = None
    try:
        zcall(tunnel, "snapshot-create", volume="vol_ds1", snapshot="x")
    except Exception as exc:  # netapp-lib raises NaApiError
        failed = exc
    assert failed is not None and getattr(failed, "code", None) == "13003", failed
