# Copyright (c) kvmsnap.core contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the ontap_* modules (plugins/module_utils/_ontap_args.py)."""

    DOCUMENTATION = r"""
options:
  hostname:
    description:
      - Cluster management host name or IP address of the ONTAP controller.
      - Only the name or address; a scheme (V(https://)), a port, a path or whitespace is refused.
        Use O(port) for the port.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_HOSTNAME) is used.
    type: str
    required: true
  port:
    description:
      - HTTPS port of the management interface. Defaults to 443.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_PORT) is used.
    type: int
  username:
    description:
      - ONTAP user for basic authentication.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_USERNAME) is used.
    type: str
  password:
    description:
      - Password of O(username). Mutually exclusive with O(cert_file).
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_PASSWORD) is used.
    type: str
  cert_file:
    description:
      - PEM client certificate for certificate authentication (ONTAP C(security login create -authmethod cert)).
      - Requires O(key_file). Mutually exclusive with O(password).
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_CERT_FILE) is used.
    type: path
  key_file:
    description:
      - PEM private key of O(cert_file). Must not be readable by group or others.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_KEY_FILE) is used.
    type: path
  validate_certs:
    description:
      - Verify the controller's TLS certificate. Only set to V(false) in a lab.
      - The verification is set up per connection; the process-wide TLS defaults are never changed.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM CA bundle used to verify the controller's certificate (instead of the system trust store).
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_CA_PATH) is used.
    type: path
  transport:
    description:
      - API used to talk to the controller.
      - V(rest) uses the ONTAP REST API (ONTAP 9.6 or later) and needs no extra Python library.
      - V(zapi) uses ONTAPI (ZAPI) through the C(netapp-lib) Python library, for older clusters.
      - V(auto) uses REST when C(/api/cluster) answers (and the release is not 9.4/9.5), else ZAPI.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_TRANSPORT) is used.
    type: str
    choices: [rest, zapi, auto]
    default: rest
  timeout:
    description:
      - Seconds to wait for one API call, and for an asynchronous ONTAP job to finish (1-3600).
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_TIMEOUT) is used.
    type: int
    default: 60
  retries:
    description:
      - How many times a transient failure (connection reset or refused, RPC errors 65541/65552/65562,
        "temporarily locked") is retried with a short backoff (0-10).
      - A call that creates something is never repeated blindly; the module first checks whether it happened.
      - If not set in the task, the value of environment variable E(KVMSNAP_ONTAP_RETRIES) is used.
    type: int
    default: 3
requirements:
  - C(netapp-lib) (only for O(transport=zapi), and for consistent multi-volume snapshots on ONTAP before 9.10.1)
notes:
  - "The modules run where the task runs; usually use C(delegate_to: localhost) or the controller inventory host
    with C(connection: local)."
  - Set the connection options once with C(module_defaults) and C(group/kvmsnap.core.ontap).
"""
