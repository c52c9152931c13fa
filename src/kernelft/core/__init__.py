"""The shared core: config validation against the packaged schema, logging, provenance, seeds, tables and the
plot theme."""
