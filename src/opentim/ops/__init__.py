"""Operations: health and readiness probes, the REST edge's metrics, log formatting and the
TOML config file of ``opentim serve`` (docs/running.md, docs/configuration.md)."""
