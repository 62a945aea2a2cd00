"""What a result means, independent of how it was measured or shown (issue 16's `tokbench.results`): the typed
result (`tokbench.results.result`: `Result`, `PfidEntry`, `GfidEntry`, one `read`/`write`, canonical metric keys)
and the metric metadata registry (`tokbench.results.metrics`). Every reader of result files goes through here."""
