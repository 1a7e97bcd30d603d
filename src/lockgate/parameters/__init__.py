"""Hierarchical parameters, plain or secure (``lockgate param``)."""
