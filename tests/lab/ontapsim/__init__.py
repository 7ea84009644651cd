"""A loopback ONTAP simulator (REST + ZAPI subset) for the kvmsnap.core lab.

Behaviour follows ONTAP's documented REST API and ZAPI for the calls the collection makes; see tests/lab/README.md.
"""
