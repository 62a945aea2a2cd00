"""Sub-commands of the `tokbench` CLI, one module each (see tokbench.cli).

Every command module is imported at start-up (to build the parser), so the library imports a command needs sit
inside its functions, on purpose: `tokbench --help` and `tokbench list` stay fast and never import torch
(tests/test_first_hour.py). Everywhere below the CLI, imports of tokbench's own modules sit at the top of files."""
