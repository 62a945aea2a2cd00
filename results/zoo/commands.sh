#!/bin/sh
# The command that produced every number in results/zoo/ (written by `tokbench zoo` when it started).
# tokbench commit 751763d7672201723f04c2418f632422b662aed8; python 3.11.7; host vm; started 2026-11-22T07:07:16+00:00
# Re-running it resumes: finished stages are skipped (markers in state/), unfinished ones continue.
set -e
OMP_NUM_THREADS=1 TOKBENCH_OFFLINE=1 HF_HUB_OFFLINE=1 tokbench zoo --config benchmarks/experiments/zoo.yaml --out results/zoo --device cpu --no-progress

# The correlation step alone, as the zoo runs it (re-runnable on the committed result files):
# tokbench correlate --runs results/zoo/runs --target gfid --metrics rfid,pfid,usage,perplexity,psnr,ssim --resamples 10000 --seed 0 --out results/zoo --leaderboard results/zoo/leaderboard.json
