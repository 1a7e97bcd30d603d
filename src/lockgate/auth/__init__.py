"""Principals, the one policy check, keys, secrets and the audit log."""
