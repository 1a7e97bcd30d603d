"""Serving: model packages and formats, the inference server, endpoints and their controller."""
