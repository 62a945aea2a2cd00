"""Networks that serve only adapters (one upstream architecture each, official key names): private to
`tokbench_adapters`. Blocks shared with the core (in-house models) stay in `tokbench.nn`."""
