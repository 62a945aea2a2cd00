#!/usr/bin/env bash
# GPU check of issue 18, ready to run on one GPU machine (<= 8 min on one H100): prints one table, writes one JSON.
#   benchmarks/perf/gpu_check.sh [OUT_DIR]            # default OUT_DIR=results/gpu -> results/gpu/gpu_check.json
#   DEVICE=cpu TINY=1 benchmarks/perf/gpu_check.sh /tmp/gc   # CPU smoke run of the script itself (figures meaningless)
# Parts (benchmarks/perf/gpu_check.py): fixture parity on the device in fp32 (ids exact, images within 2e-4) + bf16
# deviation; runner images/s end to end vs decode-only (conv VQ, 256 px, bf16; goal >= 50 %); KV-cache speed-up of
# GPT-B and RAR-B at batch 256 in bf16 (goal >= 5x); then a single-node torchrun smoke run of `tokbench run` that must
# equal one process (NCCL with one rank per GPU when >= 2 GPUs; with one GPU NCCL cannot put two ranks on it, so the
# multi-process check runs 2 ranks on gloo/CPU and the table says so).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
JSON=$OUT/gpu_check.json
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokbench-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
rm -f "$JSON"
FLAG=()
T_PARTS=420; T_ONE=120; T_MULTI=180   # the <= 8 min budget on one H100
if [ "$TINY" = 1 ]; then FLAG=(--tiny); T_PARTS=1200; T_ONE=600; T_MULTI=900; fi   # slow CPU Inception

timeout "$T_PARTS" python benchmarks/perf/gpu_check.py --device "$DEVICE" "${FLAG[@]}" --json "$JSON" >"$WORK/parts.log" 2>&1 \
  || { tail -n 30 "$WORK/parts.log"; echo "gpu_check.py failed or ran past ${T_PARTS} s" >&2; exit 1; }

# torchrun smoke: N ranks of `tokbench run` give the result of one process --------------------------------------------
NGPU=0
if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then NGPU=$(nvidia-smi -L | wc -l); fi
if [ "$NGPU" -ge 2 ]; then NPROC=$NGPU; RDEV=cuda; BACKEND=nccl; else NPROC=2; RDEV=cpu; BACKEND=gloo; fi
NUM=$([ "$TINY" = 1 ] && echo 8 || echo 256)
cat >"$WORK/suite.yaml" <<YAML
name: gpu-check-torchrun
data: sample
num_images: $NUM
resolution: null
tokenizers: [pixel-vq-p4-k64]
metrics: [rfid, pfid, usage]
pfid: {alpha: [0.5, 1.0], delta: [0.1], seeds: [0], mode: code}
batch_size: 4
chunk_size: 8
YAML
RUN=(-m tokbench run --suite "$WORK/suite.yaml" --device "$RDEV" --leaderboard-dir '' --no-progress)
timeout "$T_ONE" python "${RUN[@]}" --out "$WORK/one" >"$WORK/one.log" 2>&1 || { tail -n 20 "$WORK/one.log"; exit 1; }
timeout "$T_MULTI" torchrun --standalone --nproc_per_node "$NPROC" "${RUN[@]}" --out "$WORK/multi" >"$WORK/multi.log" 2>&1 \
  || { tail -n 20 "$WORK/multi.log"; exit 1; }
python - "$WORK/one" "$WORK/multi" "$JSON" "$NPROC" "$BACKEND" <<'PY'
import glob, json, math, os, sys
one, multi, out, nproc, backend = sys.argv[1:]
def metrics(d):
    (f,) = glob.glob(os.path.join(d, "*.json"))
    m = json.load(open(f))["metrics"]
    flat = {"rfid": m["rfid"], "usage": m["codebook"]["usage"]}
    flat.update({f"pfid@{p['alpha']}": p["mean"] for p in m["pfid"]})
    return flat
a, b = metrics(one), metrics(multi)
rel = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a)
res = json.load(open(out))
res["torchrun"] = {"nproc": int(nproc), "backend": backend, "one": a, "multi": b, "max_rel_diff": rel,
                   "ok": set(a) == set(b) and rel <= 1e-6}
res.setdefault("extra", {})["torchrun " + nproc + " ranks (" + backend + ") vs 1 process"] = (
    f"max rel diff {rel:.1e} (tolerance 1e-6)  {'yes' if res['torchrun']['ok'] else 'NO'}")
json.dump(res, open(out + ".tmp", "w"), indent=1)
os.replace(out + ".tmp", out)
PY
python benchmarks/perf/gpu_check.py --json "$JSON" --table-only
echo "-> $JSON"
