"""Python clients: REST (for app backends, tests and benchmarks) and the gateway session."""
