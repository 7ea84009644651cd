"""`make demo`: the whole backup -> damage -> restore cycle of kvmsnap.core on this machine, no manual step.

1. starts the lab's ONTAP simulator (tests/lab/ontap-sim) with two datastore volumes;
2. boots two small real Linux guests (tests/lab/guestlab) whose data disks live in those volumes
   (one per volume, so one backup snapshots two volumes at once), when libvirtd and QEMU are usable;
   otherwise it says so and runs discover + backup against libvirt's test driver;
3. writes an inventory (KVM host `localhost`, connection local; controller `cluster1`);
4. runs the playbooks kvmsnap.core.discover and kvmsnap.core.backup, then kvmsnap.core.verify: a throwaway copy of
   each guest boots from the snapshot (overlays, no network), its agent answers, a check runs in it, the copy is
   removed and the snapshot marked verified;
5. damages guest 1's data (writes /data/DAMAGED in the guest) and deletes guest 2 (domain and disk);
6. runs kvmsnap.core.restore for both, from the latest verified backup;
7. prints the proof: restored data equals the snapshot's, the deleted VM is back and running, every VM was
   released by the backup, and each VM's pause window.

It touches nothing outside the lab directory (KVMSNAP_LAB_DIR, default /var/tmp/kvmsnap-lab): the guests run
under the lab's own libvirtd (tests/lab/labd: a privileged libvirtd with stock settings in a private mount
namespace; never the host's daemon, never /etc/libvirt); the work directory, the manifest key and Ansible's
temp files are under <lab dir>/tmp (as a non-root user: a temp dir). Remove the lab with tests/lab/labd remove.
Everything it made is removed at the end and on failure (guests destroyed and undefined, simulator stopped).
Environment: KVMSNAP_DEMO_KEEP=1 keeps the work directory (inventory, reports, logs) for a look afterwards;
KVMSNAP_DEMO_TEST_DRIVER=1 uses libvirt's test driver even where real guests could run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tests" / "lab"
sys.path.insert(0, str(LAB))
sys.path.insert(0, str(REPO / "tests"))

import yaml
from guestlab import labd
from helpers.sim_fixtures import start_sim

COLL_ROOT = REPO / "build" / "collections"
PLAYBOOK = [sys.executable.replace("/python", "/ansible-playbook") if (Path(sys.executable).parent / "ansible-playbook").exists()
            else "ansible-playbook"]
T0 = time.monotonic()


def say(text: str = "") -> None:
    print("[%5.1fs] %s" % (time.monotonic() - T0, text) if text else "", flush=True)


def banner(text: str) -> None:
    print("\n=== %s %s" % (text, "=" * max(0, 70 - len(text))), flush=True)


class Demo:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="kvmsnap-demo-", dir=self.tmp_root()))
        os.chmod(self.work, 0o755)  # QEMU runs as libvirt-qemu: the guest disks below must be reachable
        self.sim = None
        self.conn = None
        self.doms: list = []
        self.names: list[str] = []
        self.mode = "real"

    @staticmethod
    def tmp_root() -> str | None:
        """<lab dir>/tmp as root (the lab's libvirtd needs root anyway), else the system's temp dir."""
        if os.geteuid() != 0:
            return None
        try:
            return str(labd.prepare_tmp())
        except (OSError, labd.LabError):
            return None

    # ---------------------------------------------------------------- lab
    def start_sim(self) -> None:
        self.sim = start_sim(self.work / "ontap")
        self.vols = {v: self.work / "ontap" / "volumes" / "svm1" / v for v in ("vol_ds1", "vol_ds2")}
        say("ONTAP simulator up at %s (cluster lab-cluster, svm1, volumes vol_ds1 and vol_ds2)" % self.sim.url)

    def real_guests_possible(self) -> str | None:
        """None when real guests can run here, else why not."""
        try:
            import libvirt
        except ImportError:
            return "libvirt-python is missing"
        import guestlab
        if os.geteuid() != 0 and not os.environ.get("KVMSNAP_LAB_URI"):
            return "the lab's own libvirtd needs root (sudo make demo)"
        try:
            if not os.environ.get("KVMSNAP_LAB_URI"):
                labd.start()
            import libvirt
            self.conn = libvirt.open(labd.uri())
        except Exception as exc:  # libvirt.libvirtError, labd.LabError
            return "the lab's libvirtd is not reachable at %s (%s)" % (labd.uri(), exc)
        if not shutil.which("qemu-system-x86_64"):
            return "QEMU (qemu-system-x86_64) is not installed"
        cache = Path(os.environ.get("KVMSNAP_LAB_CACHE", str(LAB / "cache")))
        missing = guestlab.missing_host_commands()
        if missing and not (cache / "guest" / "manifest.json").exists():
            return "the guest builder needs " + ", ".join(missing)
        return None

    def boot_guests(self) -> None:
        import guestlab
        say("building/reusing the guest kernel + initramfs (cached in tests/lab/cache) ...")
        assets = guestlab.build_assets(os.environ.get("KVMSNAP_LAB_CACHE", str(LAB / "cache")))
        self.boot_dirs = sorted({os.path.dirname(assets.kernel), os.path.dirname(assets.initrd)})
        prefix = "kvmsnap-demo-%d-" % os.getpid()
        for index, vol in enumerate(("vol_ds1", "vol_ds2"), start=1):
            name = "%sweb%d" % (prefix, index)
            disk = str(self.vols[vol] / ("%s.img" % name))
            guestlab.make_data_disk(disk, 32)
            dom = guestlab.define_guest(self.conn, name, disk, assets)
            self.doms.append(dom)
            self.names.append(name)
        for dom in self.doms:
            secs = guestlab.wait_agent_ready(dom, timeout=120)
            say("guest %s running, guest agent answers (%.1fs); data disk %s" % (
                dom.name(), secs, self.disk_of(dom.name())))
        time.sleep(1.0)  # let the writers put a few lines into /data/log.txt

    def disk_of(self, name: str) -> str:
        vol = "vol_ds%d" % (self.names.index(name) + 1)
        return str(self.vols[vol] / ("%s.img" % name))

    def test_driver_node(self) -> str:
        import guestlab
        prefix = "demo-vm"
        doms = guestlab.make_test_domains(10, str(self.vols["vol_ds1"]), prefix=prefix)
        node = str(self.work / "testnode.xml")
        guestlab.write_test_node(node, doms)
        chosen = [doms[3], doms[9]]  # running, persistent, no ISO; with NVRAM and a data disk
        for dom in chosen:  # the test driver needs no files; the manifests copy the NVRAM, so make them
            for path in [d["path"] for d in dom["disks"]] + [dom["nvram"]]:
                if path:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as fh:
                        fh.truncate(1024 * 1024)
        self.names = [d["name"] for d in chosen]
        return "test://" + node

    def inventory(self, uri: str) -> Path:
        datastores = [{"path": str(self.vols[v]), "controller": "cluster1", "svm": "svm1", "volume": v}
                      for v in ("vol_ds1", "vol_ds2")]
        inv = {"all": {"children": {
            "kvm_hosts": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "kvmsnap_libvirt_uri": uri}}},
            "ontap_controllers": {"hosts": {"cluster1": {
                "ontap_hostname": self.sim.host, "ontap_port": self.sim.port, "ontap_username": "admin",
                "ontap_password": "netapp123", "ontap_transport": "rest", "ontap_validate_certs": True,
                "ontap_ca_path": self.sim.ca_file}}}},
            "vars": {"kvmsnap_vms": self.names, "kvmsnap_datastores": datastores,
                     "kvmsnap_quiesce_mode": "auto", "kvmsnap_policy": "daily", "kvmsnap_retention": "daily:7",
                     "kvmsnap_state_dir": str(self.work / "state"), "kvmsnap_report_dir": str(self.work / "reports"),
                     "kvmsnap_manifest_key_file": str(self.work / "manifest.key")}}}
        path = self.work / "inventory.yml"
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        say("inventory written: %s (KVM host localhost, controller cluster1)" % path)
        return path

    # ---------------------------------------------------------------- playbooks
    def playbook(self, name: str, inventory: Path, extra: dict | None = None) -> None:
        cmd = PLAYBOOK + ["-i", str(inventory), "kvmsnap.core.%s" % name]
        if extra:
            cmd += ["-e", json.dumps(extra)]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLL_ROOT), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_DISPLAY_SKIPPED_HOSTS="false",
                   ANSIBLE_DISPLAY_OK_HOSTS="true", ANSIBLE_LOCALHOST_WARNING="false",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"), ANSIBLE_REMOTE_TEMP=str(self.work / "ansible-tmp"))
        log = self.work / ("%s.log" % name)
        say("$ ansible-playbook %s" % " ".join(cmd[1:]))
        started = time.monotonic()
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(self.work), check=False)
        text = log.read_text()
        self.print_summary(text)
        say("%s finished in %.1fs (rc=%d; full log %s)" % (name, time.monotonic() - started, proc.returncode, log))
        if proc.returncode != 0:
            tail = "\n".join(text.splitlines()[-40:])
            raise SystemExit("kvmsnap.core.%s failed (rc=%d):\n%s" % (name, proc.returncode, tail))

    @staticmethod
    def print_summary(text: str) -> None:
        """The play's own summary lines (the debug tasks 'Summary' / table), indented."""
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("TASK [") and ("Summary" in line or "VMs, disks and where they live" in line):
                for inner in lines[i + 1:]:
                    if inner.startswith("TASK [") or inner.startswith("PLAY RECAP"):
                        break
                    stripped = inner.strip().strip(",").strip('"')
                    if stripped and not stripped.startswith(("ok:", "}", "msg\"", "\"msg\"", "]")):
                        print("      " + stripped.replace('\\"', '"'))

    def report(self, kind: str) -> dict:
        files = sorted((self.work / "reports").glob("%s-*.json" % kind))
        return json.loads(files[-1].read_text())

    # ---------------------------------------------------------------- the cycle
    def run_real(self) -> None:
        import guestlab
        self.boot_guests()
        inv = self.inventory(labd.uri())
        banner("discover")
        self.playbook("discover", inv)
        banner("backup")
        self.playbook("backup", inv)
        backup = self.report("backup")
        snap = backup["snapshot"]
        web1, web2 = self.names
        snap_log = {n: guestlab.read_disk_file(str(Path(self.disk_of(n)).parent / ".snapshot" / snap /
                                                   Path(self.disk_of(n)).name)) for n in self.names}
        states_after_backup = {d.name(): d.state()[0] for d in self.doms}

        banner("verify")
        self.playbook("verify", inv, {"kvmsnap_restore_boot_dirs": getattr(self, "boot_dirs", []),
                                      "kvmsnap_verify_dir": str(self.work / "verify"),
                                      "kvmsnap_verify_command": "grep ' /data ' /proc/mounts && tail -n 1 /data/log.txt"})
        verify = self.report("verify")
        verify_ok = verify.get("verified") is True and verify.get("marked_verified") is True
        for vm in verify["vms"]:
            check = vm.get("check") or {}
            verify_ok &= bool(vm.get("verified")) and vm.get("copy") != vm["name"]
            say("verify %s: copy %s booted=%s from .snapshot/%s, guest agent after %ss, check rc=%s output %r" % (
                vm["name"], vm.get("copy"), vm.get("booted"), snap, vm.get("agent_seconds"), check.get("rc"),
                (check.get("stdout") or "").strip()))
        verify_ok &= all(d.state()[0] == states_after_backup[d.name()] for d in self.doms)
        say("originals still running during the verify: %s; copies left: %s" % (
            "yes" if all(d.state()[0] == states_after_backup[d.name()] for d in self.doms) else "NO",
            [d.name() for d in self.conn.listAllDomains(0) if d.name().startswith("kvmsnap-verify-")] or "none"))
        say("snapshot %s comment now: %s" % (snap, " / ".join(verify.get("comments") or ["(not marked)"])))

        banner("damage")
        dom1 = self.doms[0]
        guestlab.guest_exec(dom1, ["/bin/sh", "-c", "echo ransomware was here > /data/DAMAGED; sync"])
        say("wrote /data/DAMAGED inside %s: %r" % (web1, guestlab.read_guest_file(dom1, "/data/DAMAGED")))
        guestlab.destroy_and_undefine(self.doms[1])
        os.unlink(self.disk_of(web2))
        say("deleted %s: domain destroyed and undefined, disk %s removed" % (web2, self.disk_of(web2)))

        banner("restore")
        # the guests boot the lab's kernel directly: the restore allows that directory (docs/security.md)
        self.playbook("restore", inv, {"kvmsnap_restore_vms": [web1, web2],
                                       "kvmsnap_restore_snapshot": "latest_verified",
                                       "kvmsnap_restore_force": True,
                                       "kvmsnap_restore_boot_dirs": getattr(self, "boot_dirs", [])})
        restore = self.report("restore")

        banner("proof")
        import libvirt
        ok = verify_ok
        say("restored from %s (latest_verified), verified by the verify run above: %s" % (
            restore.get("snapshot"), "yes" if verify_ok and restore.get("snapshot") == snap else "NO"))
        ok &= restore.get("snapshot") == snap
        dom1 = self.conn.lookupByName(web1)
        guestlab.wait_agent_ready(dom1, timeout=120)
        probe = guestlab.guest_exec(dom1, ["/bin/sh", "-c", "test -e /data/DAMAGED"])
        damaged = None if probe.get("exitcode") == 1 else probe
        for name in self.names:
            dom = self.conn.lookupByName(name)
            guestlab.wait_agent_ready(dom, timeout=120)
            live = guestlab.read_guest_file(dom, "/data/log.txt")
            base = snap_log[name]
            same = live.startswith(base) and len(base) > 0
            ok &= same
            running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            ok &= running
            numbers = guestlab.parse_writer_log(base)
            say("%s: running=%s; /data/log.txt starts with the snapshot's %d lines (last #%d): %s" % (
                name, running, len(numbers), numbers[-1] if numbers else -1, "YES" if same else "NO"))
        ok &= damaged is None
        verdict = "gone (restored data = snapshot data)" if damaged is None else "STILL THERE"
        say("%s: /data/DAMAGED after the restore: %s" % (web1, verdict))
        back = next((v for v in restore["vms"] if v["name"] == web2), {})
        say("%s (deleted) is back: defined from its manifest, state=%s, guest agent=%s" % (
            web2, back.get("state_after"), (back.get("details") or {}).get("agent")))
        ok &= back.get("state_after") == "running"
        for vm in backup["vms"]:
            released = vm.get("released") and states_after_backup.get(vm["name"]) == libvirt.VIR_DOMAIN_RUNNING
            ok &= bool(released)
            say("backup %s: %s released=%s, consistency=%s, pause window %.1f ms" % (
                snap, vm["name"], "yes" if released else "NO", vm.get("consistency"), vm.get("pause_ms") or 0))
        made = ", ".join("%s (%s)" % (v["volume"], v.get("method")) for v in backup["volumes"] if v["ok"])
        say("volumes in snapshot %s: %s" % (snap, made))
        say("safety snapshot taken before the restore: %s" % restore.get("safety_snapshot"))
        banner("result")
        if not ok:
            raise SystemExit("DEMO FAILED: see the lines above")
        say("DEMO OK: backup -> verify (boot from the snapshot) -> damage -> restore cycle on real guests")

    def run_test_driver(self, why: str) -> None:
        say("real guests are not possible here: %s" % why)
        say("falling back to libvirt's test driver (test:///<node.xml>): discover + backup only - the test driver "
            "keeps no state between processes, so a deleted VM cannot be shown coming back")
        uri = self.test_driver_node()
        inv = self.inventory(uri)
        banner("discover")
        self.playbook("discover", inv)
        banner("backup")
        self.playbook("backup", inv)
        backup = self.report("backup")
        for vm in backup["vms"]:
            say("backup %s: %s consistency=%s pause %.1f ms"
                % (backup["snapshot"], vm["name"], vm.get("consistency"), vm.get("pause_ms") or 0))
        say("DEMO (test driver) OK: discover + backup; install libvirtd and QEMU for the full cycle")

    # ---------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        if self.conn is not None:
            import guestlab
            for name in self.names:
                try:
                    guestlab.destroy_and_undefine(self.conn.lookupByName(name))
                except Exception:  # already gone (libvirtError)
                    pass
            self.conn.close()
        if self.sim is not None:
            self.sim.stop()
        if os.environ.get("KVMSNAP_DEMO_KEEP") == "1":
            say("kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        say("cleaned up: guests destroyed and undefined, simulator stopped")


def main() -> int:
    demo = Demo()

    def on_signal(signum, _frame):
        raise SystemExit("interrupted by signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    banner("kvmsnap.core demo")
    try:
        demo.start_sim()
        why = demo.real_guests_possible()
        if os.environ.get("KVMSNAP_DEMO_TEST_DRIVER") == "1":
            why = "KVMSNAP_DEMO_TEST_DRIVER=1 asks for the test driver"
        if why is None:
            demo.run_real()
        else:
            demo.run_test_driver(why)
        return 0
    finally:
        demo.cleanup()
        say("total %.1fs" % (time.monotonic() - T0))


if __name__ == "__main__":
    sys.exit(main())
