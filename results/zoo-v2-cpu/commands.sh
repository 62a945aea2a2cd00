#!/bin/sh
# The command that produced every number in results/zoo-v2-cpu/ (written by `tokbench zoo` when it started).
# tokbench commit 6b319da203657843de6970f264e67556cc6328bc; python 3.11.7; host vm; started 2026-12-07T05:34:25+00:00
# Re-running it resumes: finished stages are skipped (markers in state/), unfinished ones continue.
set -e
HF_HUB_OFFLINE=1 tokbench zoo --config benchmarks/experiments/zoo-v2-cpu.yaml --out results/zoo-v2-cpu --no-progress

# The correlation step alone, as the zoo runs it (re-runnable on the committed result files):
# tokbench correlate --runs results/zoo-v2-cpu/runs --target gfid --metrics rfid,pfid,usage,perplexity,psnr,ssim --resamples 10000 --seed 0 --out results/zoo-v2-cpu --leaderboard results/zoo-v2-cpu/leaderboard.json
