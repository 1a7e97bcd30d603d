"""Environments as the user sees them: status, listings and details, and their audit logs."""
