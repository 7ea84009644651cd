"""The ontap_* modules with the login an AWX/AAP credential injects (KVMSNAP_ONTAP_USERNAME/PASSWORD in the
environment, docs/awx.md): it logs in a task that gives none, and a task's certificate login still wins over it,
also when the credential's default account is empty. Against the ONTAP simulator (401 on a wrong login)."""

from __future__ import annotations

import os

from helpers.module_fixtures import run_module

ENV_DEFAULT = {"KVMSNAP_ONTAP_USERNAME": "admin", "KVMSNAP_ONTAP_PASSWORD": "netapp123"}


def _info(args: dict, env: dict):
    return run_module("ontap_snapshot_info", {**args, "svm": "svm1", "volumes": ["vol_ds1"]}, env=env)


def test_password_login_from_the_environment(ontap_sim):
    where = {k: v for k, v in ontap_sim.conn().items() if k not in ("username", "password")}
    res = _info(where, ENV_DEFAULT)
    assert not res.failed, res
    res = _info(where, dict(ENV_DEFAULT, KVMSNAP_ONTAP_PASSWORD="wrong-Pw-9"))
    assert res.failed and "HTTP 401" in res["msg"] and "wrong-Pw-9" not in str(res), res


def test_certificate_login_wins_over_the_environment_default_account(ontap_sim):
    conn = ontap_sim.conn("rest", "admin", cert=True)
    os.chmod(conn["key_file"], 0o600)
    for password in ("netapp123", ""):  # a default account, or the empty one a credential without it injects
        res = _info(conn, dict(ENV_DEFAULT, KVMSNAP_ONTAP_PASSWORD=password))
        assert not res.failed and res["transport"] == "rest", (password, res)
    # a password the task itself gives beside a certificate is still refused
    res = _info(dict(conn, password="other-Pw-7"), ENV_DEFAULT)
    assert res.failed and "password and cert_file are mutually exclusive" in res["msg"], res
    assert "other-Pw-7" not in str(res)
