"""Embedded mode: `POST /events` decoding and the engine loop that owns the engine."""
