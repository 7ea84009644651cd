"""The commands the README and the guides tell a user to run, run as written against the lab.

Markdown marks what runs with an HTML comment right before a fenced block:

  <!-- kvmsnap:run NAME -->        a shell block, run with bash -e in the site directory
  <!-- kvmsnap:inventory -->       the user's inventory.yml: written with the lab's values for what the doc
                                   says to replace (host, VMs, cluster address, CA file, datastores)
  <!-- kvmsnap:editor -->          what the user types in the editor of the next `ansible-vault create`
  <!-- kvmsnap:file PATH -->       a file the user writes, as written (VM names replaced)

Only names the docs tell the user to replace are replaced (`web1`/`db1`, the datastore paths, the
`CHANGE-ME` password); HOME is the site directory, so `~/...` paths and the report directory are the test's.
One lab (the ONTAP simulator's default cluster, two minimal guests, one per volume) serves every doc,
in reading order; a doc's blocks run in order on that lab.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers.guest_fixtures import SYSTEM_URI
from helpers.sim_fixtures import start_sim

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
import guestlab
from guestlab import labd

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

# Reading order of the guides. The README's quick start repeats getting-started's commands word for word:
# a block whose every command already ran verbatim on this lab is checked to be so, not run twice.
DOCS = ["docs/getting-started.md", "README.md", "docs/production.md", "docs/operations.md"]
MARK = re.compile(r"<!-- kvmsnap:(\w+)(?: ([^>]*?))? -->\s*\n```(\w*)\n(.*?)^```", re.S | re.M)
DOC_DATASTORES = ("/var/lib/libvirt/images/ds1", "/var/lib/libvirt/images/ds2")
DOC_VMS = ("web1", "db1")


def blocks(doc: str) -> list[tuple[str, str, str]]:
    """(kind, argument, body) of every marked block of DOC, in order."""
    text = (REPO / doc).read_text()
    return [(m.group(1), (m.group(2) or "").strip(), m.group(4)) for m in MARK.finditer(text)]


def commands(script: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comment lines dropped."""
    joined = re.sub(r"\\\n\s*", "", script)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def run_on_tty(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """CMD with its stdout on a terminal, as when the user types it (`ansible-vault create` needs one)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                              timeout=180, check=False)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, proc.stderr.decode("utf-8", "replace"))


class DocsLab:
    def __init__(self, base: Path, conn) -> None:
        self.base = base
        self.conn = conn
        self.site = base / "site"
        self.site.mkdir()
        self.sim = start_sim(base / "ontap")
        self.vols = [self.sim.data / "volumes" / "svm1" / v for v in ("vol_ds1", "vol_ds2")]
        prefix = "%sdoc-" % guestlab.run_prefix()
        self.vms = {doc: prefix + doc for doc in DOC_VMS}
        self.doms = {doc: guestlab.define_minimal_guest(conn, name, str(vol))
                     for (doc, name), vol in zip(self.vms.items(), self.vols)}
        self.editor_text: str | None = None
        self.ran: set[str] = set()
        self.log: list[str] = []

    def close(self) -> None:
        guestlab.destroy_all(self.doms.values())
        self.sim.stop()

    # ------------------------------------------------------------ what the docs say to replace
    def adapt(self, text: str) -> str:
        for doc, lab in zip(DOC_DATASTORES, self.vols):
            text = text.replace(doc, str(lab))
        for doc, name in self.vms.items():
            text = re.sub(r"\b%s\b" % doc, name, text)
        return text

    def inventory(self, body: str) -> None:
        inv = yaml.safe_load(self.adapt(body))
        hosts = inv["all"]["children"]["kvm_hosts"]["hosts"]
        for name in list(hosts):
            hosts[name] = dict(hosts[name] or {}, ansible_connection="local",
                               ansible_python_interpreter=sys.executable, kvmsnap_libvirt_uri=SYSTEM_URI)
        for ctrl in inv["all"]["children"]["ontap_controllers"]["hosts"].values():
            assert ctrl["ontap_password"] == "{{ vault_cluster1_password }}", "the docs' inventory takes the vault"
            ctrl.update(ontap_hostname=self.sim.host, ontap_port=self.sim.port, ontap_username="admin",
                        ontap_ca_path=self.sim.ca_file)
        inv["all"]["vars"]["kvmsnap_state_dir"] = str(self.base / "state")
        (self.site / "inventory.yml").write_text(yaml.safe_dump(inv, sort_keys=False))

    def env(self) -> dict:
        env = dict(os.environ, HOME=str(self.site), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                   # async jobs (the restore's shutdown) resolve "~" once through HOME and once through the user's
                   # passwd entry: with HOME moved to the site, give them one absolute directory
                   ANSIBLE_ASYNC_DIR=str(self.site / ".ansible_async"))
        # what the user types in the editor (the block after `ansible-vault create`); never an interactive editor
        env["EDITOR"] = "false"
        if self.editor_text is not None:
            typed = self.base / "typed.yml"
            typed.write_text(self.editor_text)
            env["EDITOR"] = "cp %s" % typed
        return env

    def run(self, name: str, body: str) -> subprocess.CompletedProcess | None:
        script = self.adapt(body)
        todo = commands(script)
        if todo and all(cmd in self.ran for cmd in todo):
            self.log.append("%s: ran already, word for word" % name)
            print(self.log[-1], flush=True)
            return None
        started = time.monotonic()
        # as a user types them on a KVM host: in the lab daemon's mount namespace, where qemu:///system is the lab's
        proc = run_on_tty(labd.as_on_the_kvm_host(["bash", "-e", "-o", "pipefail", "-c", script], self.site), cwd=self.site,
                          env=self.env())
        self.log.append("%s: %.1fs" % (name, time.monotonic() - started))
        print(self.log[-1], flush=True)
        assert proc.returncode == 0, "block %r failed (rc=%s):\n%s\n--- stdout\n%s\n--- stderr\n%s" % (
            name, proc.returncode, script, proc.stdout[-8000:], proc.stderr[-3000:])
        self.ran.update(todo)
        return proc

    # ------------------------------------------------------------ what the lab can tell
    def reports(self, kind: str) -> list[dict]:
        files = sorted((self.site / ".kvmsnap" / "reports").glob("%s-*.json" % kind), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text()) for p in files]

    def snapshots(self, vol: Path) -> list[str]:
        return sorted(os.listdir(vol / ".snapshot")) if (vol / ".snapshot").exists() else []

    def shut_off(self, doc_vm: str) -> None:
        """What the doc asks of the user before a restore: the VM is shut down."""
        dom = self.conn.lookupByName(self.vms[doc_vm])
        if dom.isActive():
            dom.destroy()


@pytest.fixture(scope="module")
def docs_lab(libvirt_system, tmp_path_factory):
    lab = DocsLab(tmp_path_factory.mktemp("docs"), libvirt_system)
    try:
        yield lab
    finally:
        lab.close()


def test_marked_blocks_exist():
    """The guides keep their runnable blocks marked (a lost marker would silently drop a command)."""
    kinds = [kind for doc in DOCS for kind, _arg, _body in blocks(doc)]
    assert kinds.count("inventory") >= 1 and kinds.count("editor") == 1
    assert kinds.count("run") >= 8, kinds
    # the README's inventory is the guide's (the test runs the README's commands with the guide's)
    inventories = [yaml.safe_load(body) for doc in DOCS for kind, _arg, body in blocks(doc) if kind == "inventory"]
    assert all(inv == inventories[0] for inv in inventories), "the docs show different inventories"


def _check_after(lab: DocsLab, name: str, proc: subprocess.CompletedProcess | None) -> None:
    """What each step must have done, seen from the lab (not only its exit code)."""
    if name == "vault":
        vault = (lab.site / "group_vars" / "all" / "vault.yml").read_text()
        assert vault.startswith("$ANSIBLE_VAULT;") and "netapp123" not in vault
    elif name == "discover":
        assert lab.reports("discover"), "discover wrote no report"
    elif name == "backup":
        runs = lab.reports("backup")
        assert [r["status"] for r in runs[-2:]] == ["ok", "ok"], runs[-2:]
        for vol in lab.vols:
            names = lab.snapshots(vol)
            assert any("-daily_" in n for n in names) and any("-weekly_" in n for n in names), names
    elif name == "check" and proc is not None:
        assert "2 VM(s) checked: 2 with a good backup younger than 26 h" in proc.stdout, proc.stdout[-3000:]
    elif name == "hosts" and proc is not None:
        assert lab.vms["web1"] in proc.stdout, proc.stdout[-3000:]
    elif name == "cron":
        assert lab.reports("backup")[-1]["status"] == "ok"
    elif name in ("look", "snapdir") and proc is not None:
        assert "kvmsnap-daily_" in proc.stdout and "kvmsnap-weekly_" in proc.stdout, proc.stdout
    elif name.startswith("restore"):
        last = lab.reports("restore")[-1]
        assert last["status"] == "ok" and lab.vms["web1"] in json.dumps(last), last
        # the guide backs up weekly, then daily: latest is the daily, the JSON query picks the older weekly
        assert ("-weekly_" if "weekly" in name else "-daily_") in json.dumps(last.get("snapshot")), last.get("snapshot")


def test_docs_commands_run_as_written(docs_lab):
    """Every marked block of the README and the guides, in reading order, on one lab."""
    ran = []
    for doc in DOCS:
        for kind, _arg, body in blocks(doc):
            if kind == "editor":  # typed after the command that opens the editor, so known before it runs
                docs_lab.editor_text = body.replace("CHANGE-ME", "netapp123")
        for kind, arg, body in blocks(doc):
            if kind == "inventory":
                docs_lab.inventory(body)
            elif kind == "file":
                (docs_lab.site / arg).write_text(docs_lab.adapt(body))
            elif kind == "run":
                if arg.startswith("restore"):
                    docs_lab.shut_off("web1")
                proc = docs_lab.run("%s:%s" % (doc, arg), body)
                _check_after(docs_lab, arg, proc)
                ran.append("%s:%s" % (doc, arg))
    print("docs blocks: " + ", ".join(docs_lab.log))
    assert ran, "no runnable block found"
