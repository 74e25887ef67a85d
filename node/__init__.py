"""The daemon an org runs: config, keys, the local HTTP API, telemetry, the CLI, the client SDK."""
