"""Executors run step attempts. ``local`` runs each in its own process on this machine."""
