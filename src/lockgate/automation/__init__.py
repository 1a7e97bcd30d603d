"""Automation: rules that turn events into actions, and the worker that delivers them."""
