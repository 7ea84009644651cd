"""Backup and restore as an AWX / AAP job runs them: ansible-runner (AWX's engine) with the collection's credential
type injected exactly as AWX injects it (tests/helpers/awx_inject.py renders the shipped
playbooks/files/awx/credential_type.yml with a credential's inputs: env vars and the accounts file).

Two controllers with different accounts in one job, as one credential: controller c1 (simulator s1, user kvm_a) by
the credential's default account, c2 (simulator s2, user kvm_b) by its per-controller accounts; neither has a
login in its host vars. The simulators answer 401 to any other login, as ONTAP does. Each job is checked for its
rc and status, `kvmsnap_<operation>` in the final stats' artifact_data, and that no password appears in any job
event or the job's stdout. The tests run in order and share the lab: backup -> restore of a deleted VM.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.awx_inject import HIDDEN, inject
from helpers.playbook_lab import Lab, guestlab, labd, sha

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CRED_TYPE = yaml.safe_load((REPO / "playbooks" / "files" / "awx" / "credential_type.yml").read_text())
RUNNER = str(Path(sys.executable).parent / "ansible-runner")
PW_A = "PwA-" + secrets.token_hex(8)
PW_B = "PwB-" + secrets.token_hex(8)
SNAP = "kvmsnap-daily_awx1"


class Job:
    """One ansible-runner job's outcome, read from its artifacts as AWX reads them."""

    def __init__(self, pdd: Path, proc: subprocess.CompletedProcess, safe_env: dict) -> None:
        art = pdd / "artifacts" / "job"
        self.proc = proc
        self.safe_env = safe_env
        self.rc = int((art / "rc").read_text()) if (art / "rc").is_file() else None
        self.status = (art / "status").read_text().strip() if (art / "status").is_file() else None
        self.stdout = (art / "stdout").read_text() if (art / "stdout").is_file() else ""
        self.event_texts = [p.read_text() for p in sorted((art / "job_events").glob("*.json"))]
        self.events = [json.loads(t) for t in self.event_texts]
        final = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        self.artifact_data = final[-1]["event_data"].get("artifact_data", {}) if final else None

    def tail(self) -> str:
        return "rc=%s status=%s\n%s\n%s" % (self.rc, self.status, self.stdout[-6000:], self.proc.stderr[-2000:])


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("awx"), libvirt_system)
    lab.prefix = "%sawx-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1", users=[{"name": "kvm_a", "password": PW_A, "role": "admin"}])
        lab.start_sim("s2", lif=("l1", "127.0.0.2"), users=[{"name": "kvm_b", "password": PW_B, "role": "admin"}])
        lab.add_guests(("g1", "s1", "vol_ds1"), ("g2", "s2", "vol_ds1"))
        # no login in the controllers' host vars: it comes from the credential
        login = ("ontap_username", "ontap_password")
        controllers = {ctrl: {k: v for k, v in lab.controller(sim).items() if k not in login}
                       for ctrl, sim in (("c1", "s1"), ("c2", "s2"))}
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}}, controllers,
                                kvmsnap_datastores=[lab.datastore("s1", "vol_ds1", "c1"),
                                                    lab.datastore("s2", "vol_ds1", "c2")])
        yield lab
    finally:
        lab.close()


def credential(default_password: str = PW_A) -> dict:
    """The inputs of one 'kvmsnap ONTAP' credential: default account for c1, per-controller account for c2."""
    return {"username": "kvm_a", "password": default_password,
            "accounts": "c2: {username: kvm_b, password: %s}\n" % PW_B}


def run_job(lab: Lab, ident: str, playbook: str, extravars: dict, inputs: dict) -> Job:
    """A job of PLAYBOOK as AWX launches it: a project playbook that imports the collection's, the inventory, the
    survey answers as extra vars, and the credential injected into the job's environment."""
    pdd = lab.base / ident
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    (pdd / "project" / ("%s.yml" % playbook)).write_text(
        "- name: kvmsnap %s\n  ansible.builtin.import_playbook: kvmsnap.core.%s\n" % (playbook, playbook))
    (pdd / "inventory" / "hosts.yml").write_text(lab.inv.read_text())
    env, safe_env = inject(CRED_TYPE, inputs, pdd)
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(env))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    cmd = [RUNNER, "run", str(pdd), "-p", "%s.yml" % playbook, "--ident", "job"]
    run_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_HOST_KEY_CHECKING="false",
                   PATH="%s:%s" % (Path(sys.executable).parent, os.environ.get("PATH", "")))  # the EE's ansible
    for name in env:  # the job gets the credential from the injection only
        run_env.pop(name, None)
    proc = subprocess.run(labd.as_on_the_kvm_host(cmd, cwd=str(pdd)), capture_output=True, text=True, env=run_env,
                          timeout=420, check=False)
    return Job(pdd, proc, safe_env)


def assert_no_secret(job: Job) -> None:
    assert job.events, job.tail()
    for secret in (PW_A, PW_B):
        assert secret not in job.stdout
        assert not [t for t in job.event_texts if secret in t]
        assert secret not in json.dumps(job.safe_env)


def test_the_injection_follows_the_credential_type(tmp_path):
    env, safe_env = inject(CRED_TYPE, credential(), tmp_path)
    assert env["KVMSNAP_ONTAP_USERNAME"] == "kvm_a" and env["KVMSNAP_ONTAP_PASSWORD"] == PW_A
    accounts = Path(env["KVMSNAP_ONTAP_ACCOUNTS_FILE"])
    assert accounts.parent == tmp_path / "env" and oct(accounts.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(accounts.read_text()) == {"c2": {"username": "kvm_b", "password": PW_B}}
    assert safe_env["KVMSNAP_ONTAP_PASSWORD"] == HIDDEN and PW_B not in json.dumps(safe_env)
    # an empty field: the variable is set but empty, the file exists but is empty
    env, _safe = inject(CRED_TYPE, {"accounts": "c1: {username: a, password: b}"}, tmp_path / "other")
    assert env["KVMSNAP_ONTAP_USERNAME"] == "" and env["KVMSNAP_ONTAP_PASSWORD"] == ""
    assert Path(env["KVMSNAP_ONTAP_ACCOUNTS_FILE"]).read_text() == "c1: {username: a, password: b}"


def test_backup_job_two_controllers_two_accounts(lab):
    job = run_job(lab, "backup", "backup", {"kvmsnap_policy": "daily", "kvmsnap_snapshot_name": SNAP}, credential())
    assert job.rc == 0 and job.status == "successful", job.tail()
    stats = job.artifact_data["kvmsnap_backup"]
    assert stats["status"] == "ok" and stats["snapshot"] == SNAP, stats
    assert sorted(stats["done"]) == sorted([lab.name("g1"), lab.name("g2")])
    assert sorted(stats["volumes"]) == ["c1:svm1:vol_ds1", "c2:svm1:vol_ds1"]
    assert lab.snapshots("s1", "vol_ds1") == [SNAP] and lab.snapshots("s2", "vol_ds1") == [SNAP]
    assert_no_secret(job)


def test_restore_job_of_a_deleted_vm_by_the_per_controller_account(lab):
    disk = lab.disk("g2", "s2", "vol_ds1")
    in_snapshot = sha(lab.vol("s2", "vol_ds1") / ".snapshot" / SNAP / disk.name)
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("g2")))
    disk.unlink()
    job = run_job(lab, "restore", "restore", {"kvmsnap_restore_vms": lab.name("g2"),
                                              "kvmsnap_restore_snapshot": SNAP}, credential())
    assert job.rc == 0 and job.status == "successful", job.tail()
    stats = job.artifact_data["kvmsnap_restore"]
    assert stats["status"] == "ok" and stats["done"] == [lab.name("g2")], stats
    assert sha(disk) == in_snapshot
    assert lab.name("g2") in [d.name() for d in lab.conn.listAllDomains()]
    assert_no_secret(job)


def test_a_wrong_default_password_fails_the_job_naming_the_controller(lab):
    job = run_job(lab, "badlogin", "backup", {"kvmsnap_policy": "daily"}, credential("Wrong-" + PW_A))
    assert job.rc != 0 and job.status == "failed", job.tail()
    assert "c1" in job.stdout and ("401" in job.stdout or "uthentication" in job.stdout), job.tail()
    assert lab.snapshots("s1", "vol_ds1") == [SNAP]  # nothing new
    assert_no_secret(job)
    assert "Wrong-" + PW_A not in job.stdout
