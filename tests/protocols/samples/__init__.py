"""Provider messages as their documentation shows them, one module per provider: what the
protocol tests and the fuzzer send."""
