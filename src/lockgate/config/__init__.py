"""Core configuration: the platform home, ``platform.toml`` and the naming rules."""
