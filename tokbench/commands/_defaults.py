"""Where commands write by default. A plain `tokbench run` must never rewrite files tracked in the repository (the
committed `results/`), wherever it is started: outputs go to `./tokbench-results/` in the current folder (ignored
by git), and the committed results are regenerated only with an explicit `--out results/runs --leaderboard-dir
results`."""

RESULTS_DIR = "tokbench-results"
RUNS_DIR = f"{RESULTS_DIR}/runs"
