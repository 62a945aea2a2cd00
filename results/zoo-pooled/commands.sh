#!/bin/sh
# The command that wrote every file in this folder from the replicate zoos it names (each made by its own commands.sh).
set -e
tokbench zoo --pool results/zoo --pool results/zoo-seed1 --pool results/zoo-seed2 --out results/zoo-pooled

# its correlation step alone:
# tokbench correlate --table results/zoo-pooled/pooled.csv --target gfid --metrics rfid,pfid,usage,perplexity,psnr,ssim --resamples 10000 --seed 0 --out results/zoo-pooled --no-html
