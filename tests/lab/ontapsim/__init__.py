"""A loopback ONTAP simulator (REST + ZAPI subset) for the kvmsnap.core lab.

Behaviour follows shared/reference/ontap-api.md; see tests/lab/README.md.
"""
