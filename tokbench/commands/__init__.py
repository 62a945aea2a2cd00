"""Sub-commands of the `tokbench` CLI, one module each (see tokbench.cli)."""
