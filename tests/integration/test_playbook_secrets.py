"""Secrets stay secret in every message: kvmsnap.core.backup/discover through ansible-playbook at -vvv.

A Snap Creator configuration (kvmsnap_snapcreator_config) holds controller credentials (NTAP_USERS), and a
user may type a password into the wrong place. Before, a malformed line was echoed in full three times
(the [ERROR] line, the "caused by" chain and the fatal result). Here each bad file is run through the
backup role at -vvv against the lab's ONTAP simulator, with libvirt's test:///default driver as the KVM
host (the run stops in the settings check, before any host or controller is touched): the sentinel secret
must be nowhere in stdout or stderr, the error must name the file's line, and nothing may be snapshotted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow]

PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
SECRET = "Zq7SentinelPw"


def _run(tmp_path: Path, sim, config_text: str, playbook: str = "backup", check: bool = False):
    cfg = tmp_path / "snapcreator.conf"
    cfg.write_text(config_text)
    inv = {"all": {
        "vars": {"ansible_python_interpreter": sys.executable, "kvmsnap_snapcreator_config": str(cfg),
                 "kvmsnap_state_dir": str(tmp_path / "state"), "kvmsnap_report_dir": str(tmp_path / "reports"),
                 "kvmsnap_manifest_key_file": str(tmp_path / "manifest.key")},
        "children": {
            "kvm_hosts": {"hosts": {"kvm1": {"ansible_connection": "local", "kvmsnap_libvirt_uri": "test:///default",
                                             "kvmsnap_vms": ["test"]}}},
            "ontap_controllers": {"hosts": {"c1": {"ontap_hostname": sim.host, "ontap_port": sim.port,
                                                   "ontap_ca_path": sim.ca_file, "ontap_username": "admin",
                                                   "ontap_password": "netapp123"}}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    cmd = [PLAYBOOK, "-i", str(path), "kvmsnap.core.%s" % playbook, "-vvv"] + (["--check"] if check else [])
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_HOST_KEY_CHECKING="false")
    env.pop("REQUESTS_CA_BUNDLE", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def _snapshots(sim) -> list:
    out = []
    for vol in (sim.data / "volumes").glob("*/*"):
        snapdir = vol / ".snapshot"
        out += sorted(os.listdir(snapdir)) if snapdir.is_dir() else []
    return out


def _out(proc) -> str:
    return "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout[-6000:], proc.stderr[-2000:])


GOOD_HEAD = "# Snap Creator KVM plug-in\nSNAME=nightly\nNTAP_USERS=cluster1:admin/%s\n" % SECRET


@pytest.mark.parametrize("bad_line, line, says", [
    ("NTAP_USERS c1:admin/%s" % SECRET, 4, "line 4: NTAP_USERS is not followed by '='"),
    ("NTAP_PWD_PROTECTION=N\nc1:admin/%s" % SECRET, 5, "line 5 is not a KEY=VALUE line"),
    ("NTAP_SNAPSHOT_NAME=%s!" % SECRET, 4, "line 4: NTAP_SNAPSHOT_NAME contains characters that are not allowed"),
    ("NTAP_SNAPSHOT_RETENTIONS=daily:%s" % SECRET, 4, "line 4: NTAP_SNAPSHOT_RETENTIONS entry 1: the count is "
                                                      "not an integer"),
], ids=["users-without-equals", "bare-credentials", "password-in-snapshot-name", "password-in-retention"])
def test_a_bad_snapcreator_line_names_the_line_never_the_secret(ontap_sim, tmp_path, bad_line, line, says):
    before = _snapshots(ontap_sim)
    proc = _run(tmp_path, ontap_sim, GOOD_HEAD + bad_line + "\n")
    assert proc.returncode != 0, _out(proc)
    output = proc.stdout + proc.stderr
    assert SECRET not in output and SECRET.lower() not in output.lower(), _out(proc)
    assert says in output, _out(proc)
    assert "kvmsnap_snapcreator_config %s: line %d" % (tmp_path / "snapcreator.conf", line) in output
    assert _snapshots(ontap_sim) == before  # stopped in the settings check: nothing touched
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.json"))


def test_a_good_snapcreator_file_with_credentials_never_shows_them(ontap_sim, tmp_path):
    """The file is read and used (prefix, retention), its NTAP_USERS line is reported as ignored, and the
    credentials in it appear nowhere in a -vvv discover run."""
    proc = _run(tmp_path, ontap_sim, GOOD_HEAD + "NTAP_SNAPSHOT_RETENTIONS=daily:3\n", playbook="discover")
    assert proc.returncode == 0, _out(proc)
    output = proc.stdout + proc.stderr
    assert SECRET not in output, _out(proc)
    assert "Snap Creator NTAP_USERS (line 3) ignored" in output, _out(proc)
    reports = sorted((tmp_path / "reports").glob("discover-*.json"))
    assert reports, _out(proc)
    report = reports[-1].read_text()
    assert SECRET not in report
    assert "kvmsnap_snapshot_prefix" in json.loads(report)["snapcreator"]["from_file"]
