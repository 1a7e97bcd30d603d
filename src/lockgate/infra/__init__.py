"""The platform as code: resources, plans, state versions and the lock (``lockgate infra``)."""
