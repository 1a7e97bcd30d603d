"""The ``lockgate`` command: one module per command group; each command parses, calls one
service function and renders. Heavy libraries are imported inside the commands."""
