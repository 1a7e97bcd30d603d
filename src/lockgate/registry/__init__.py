"""The model registry: groups, versions, approval status, model cards, and their events."""
