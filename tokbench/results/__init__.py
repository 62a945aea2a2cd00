"""What a result means, independent of how it was measured or shown (issue 16's `tokbench.results`): for now the
metric metadata registry (`tokbench.results.metrics`)."""
