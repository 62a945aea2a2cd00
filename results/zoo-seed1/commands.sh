#!/bin/sh
# The command that produced every number in results/zoo-seed1/ (written by `tokbench zoo` when it started).
# tokbench commit e03552a7f2787e8f658c418866c0d6f1f9870314; python 3.11.7; host vm; started 2026-11-22T07:15:54+00:00
# Re-running it resumes: finished stages are skipped (markers in state/), unfinished ones continue.
set -e
OMP_NUM_THREADS=1 TOKBENCH_OFFLINE=1 HF_HUB_OFFLINE=1 tokbench zoo --config benchmarks/experiments/zoo.yaml --out results/zoo-seed1 --device cpu --seed 1 --no-progress

# The correlation step alone, as the zoo runs it (re-runnable on the committed result files):
# tokbench correlate --runs results/zoo-seed1/runs --target gfid --metrics rfid,pfid,usage,perplexity,psnr,ssim --resamples 10000 --seed 0 --out results/zoo-seed1 --leaderboard results/zoo-seed1/leaderboard.json
