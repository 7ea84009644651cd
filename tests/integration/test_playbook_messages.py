"""What the playbooks say when a variable is wrong: one line naming the variable, the value and what is allowed.

Nothing here reaches a KVM host or a controller: the role's settings check stops each run first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def _run(tmp_path: Path, playbook: str, controller: dict, extra: dict) -> subprocess.CompletedProcess:
    inv = {"all": {"vars": {"ansible_python_interpreter": sys.executable,
                            "kvmsnap_state_dir": str(tmp_path / "state"),
                            "kvmsnap_report_dir": str(tmp_path / "reports")},
                   "children": {"kvm_hosts": {"hosts": {"kvm1": {"ansible_connection": "local"}}},
                                "ontap_controllers": {"hosts": {"c1": controller}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false")
    return subprocess.run([PLAYBOOK, "-i", str(path), "kvmsnap.core.%s" % playbook, "-e", json.dumps(extra)],
                          capture_output=True, text=True, env=env, timeout=180, check=False)


CTRL = {"ontap_hostname": "127.0.0.1", "ontap_username": "admin", "ontap_password": "netapp123"}


def test_invalid_choice_is_one_line_not_the_argument_spec(tmp_path):
    proc = _run(tmp_path, "backup", CTRL, {"kvmsnap_quiesce_mode": "bogus"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "kvmsnap_quiesce_mode: 'bogus' is not valid; allowed: suspend, freeze, auto, none." in out, out
    assert "argument_spec_data" not in out and "Validation of arguments failed" not in out, out

    proc = _run(tmp_path, "restore", CTRL, {"kvmsnap_restore_mode": "whole", "kvmsnap_restore_vms": ["web1"]})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "kvmsnap_restore_mode: 'whole' is not valid; allowed: files or volume." in out, out
    assert "argument_spec_data" not in out, out


def test_controller_file_errors_name_the_inventory_variable(tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    proc = _run(tmp_path, "backup", dict(CTRL, ontap_ca_path=missing), {})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "inventory host c1 (group ontap_controllers): ontap_ca_path %s does not exist" % missing in out, out
    assert "ca_path: %s" % missing not in out  # the module option name is not what the user set
    assert "netapp123" not in out
