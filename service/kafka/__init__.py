"""Kafka mode: the runner (consumer lifecycle, rebalancing), its sink, checkpoints,
the state store layout, changelog recovery, clients, and dev tools."""
