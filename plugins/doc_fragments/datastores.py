# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The datastores option of vm_info and vm_backup: one schema (plugins/module_utils/_storage_map.py), the same
    list as the roles' kvmsnap_datastores."""

    DOCUMENTATION = r"""
options:
  datastores:
    description:
      - Host directories whose files are on an ONTAP volume (the NFS mount of a volume, or a directory of it), for
        storage that the mount table cannot map (for example a local mount point of an NFS export behind a proxy,
        or a lab directory). The same list as the roles' C(kvmsnap_datastores).
      - The longest matching prefix wins; paths are compared after resolving symbolic links.
      - A file is not attributed to an entry when the entry's path is a symbolic link to a directory that is no
        volume root (no C(.snapshot) directory there), or when the file is on another mount below the entry
        (the reason says so; an NFS mount of a known controller is mapped through the mount table instead).
        On an NFS mount whose root the mount table maps to the entry's volume, a file below a deeper volume
        junction is mapped to that volume.
      - M(kvmsnap.core.vm_backup) requires every disk and backing file of every VM on a volume of these entries or
        of O(kvmsnap.core.vm_backup#module:vm_mapping); CD-ROM and floppy images are skipped with a warning.
    type: list
    elements: dict
    suboptions:
      path:
        description: Absolute host directory (the datastore).
        type: path
        required: true
      controller:
        description:
          - Inventory name of the ONTAP controller that holds the volume.
          - Required by M(kvmsnap.core.vm_info). M(kvmsnap.core.vm_backup) talks to one controller (its
            O(kvmsnap.core.vm_backup#module:hostname)), the default here; a disk on an entry of another controller
            fails its pre-flight.
        type: str
      svm:
        description: SVM that owns the volume.
        type: str
        required: true
      volume:
        description: ONTAP volume that holds O(datastores[].path).
        type: str
        required: true
      path_in_volume:
        description:
          - Where O(datastores[].path) lies inside the volume (the junction offset, C(/)-prefixed), e.g. C(/images)
            when the datastore is the C(images) directory of the volume.
            RV(kvmsnap.core.vm_info#module:vms[].disks[].path_in_volume) is this plus the file's path below it.
          - Without it, what the mount table says when it maps the directory to the same volume (an NFS mount of
            the whole volume), else C(/) (the volume's root). A value the mount table contradicts is refused.
        type: str
"""
