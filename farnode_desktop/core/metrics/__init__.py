"""Metrics: the SQLite time-series store and the recorder that feeds it from node stats and GPU telemetry."""
