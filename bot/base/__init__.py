"""Leaf helpers every layer may use: redaction, durations, cron, roles, logs, telemetry."""
