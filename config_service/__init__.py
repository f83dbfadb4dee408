"""The config service: the only writer of the live configuration."""
