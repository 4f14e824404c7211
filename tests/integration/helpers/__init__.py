"""Shared helpers for the integration tests: processes, configs, raw protocol."""
