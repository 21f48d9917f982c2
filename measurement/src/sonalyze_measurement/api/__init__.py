"""HTTP API of the measurement service."""
