"""The pure parts of the restore from a SnapMirror/SnapVault destination: the 8-file batches ONTAP allows per
restore transfer, and what the user is told when the volume itself is lost (no automatic failover)."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_vault_restore import (
    FILES_PER_TRANSFER,
    _batches,
    lost_primary_guidance,
)


def test_batches_of_at_most_eight_files_in_order():
    files = ["/f%d" % i for i in range(17)]
    batches = _batches(files)
    assert FILES_PER_TRANSFER == 8 and [len(b) for b in batches] == [8, 8, 1]
    assert [f for b in batches for f in b] == files
    assert _batches([]) == [] and _batches(files[:8]) == [files[:8]]


def test_lost_primary_names_the_copies_and_the_manual_steps():
    text = lost_primary_guidance("svm1:vol_ds1", "cluster1", [
        {"location": "svm_dr:vol_ds1_vault", "kind": "vault"}, {"location": "svm_dr:vol_ds1_mirror", "kind": "mirror"}])
    assert "Volume svm1:vol_ds1 is not on cluster1" in text
    assert "svm_dr:vol_ds1_vault (vault), svm_dr:vol_ds1_mirror (mirror)" in text
    assert "does not fail over by itself" in text
    for step in ("snapmirror break -destination-path svm_dr:vol_ds1_vault",
                 "volume mount -vserver svm_dr -volume vol_ds1_vault -junction-path /vol_ds1_vault",
                 "kvmsnap_datastores", "discover playbook", "docs/restore.md#lost-primary-volume"):
        assert step in text, step
    # the steps come in order
    assert text.index("snapmirror break") < text.index("volume mount") < text.index("discover playbook")


def test_lost_primary_without_copies():
    text = lost_primary_guidance("svm1:vol_ds1", "cluster1", [])
    assert "lists no SnapMirror/SnapVault destination" in text and "snapmirror break" not in text
