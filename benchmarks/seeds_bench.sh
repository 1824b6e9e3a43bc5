#!/usr/bin/env bash
# The seed-scaling figures of docs/seeds.md: `alm bench --seeds` at the quick,
# offline-locomotion and paper sizes, eager and fused, on 1 and 2 threads. Run it alone on
# the machine (the ratios compare N seeds with one seed in the same run).
#
#   bash benchmarks/seeds_bench.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: seeds_bench.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
lscpu | grep "Model name" | tee "$OUT/cpu.txt"
bench() { local name=$1; shift; $PYTHON -m cli bench --out "$OUT/$name.json" "$@"; }
QUICK=(--config quick --env InvertedPendulum-v5)
bench quick-eager-t1 "${QUICK[@]}" --seeds 1,2,5,10 threads=1
bench quick-eager-t2 "${QUICK[@]}" --seeds 1,2,5,10 threads=2
bench quick-fused-t2 "${QUICK[@]}" --seeds 1,5 threads=2 agent.compile=on
bench quick-fused-t1 "${QUICK[@]}" --seeds 1,5 threads=1 agent.compile=on
# the offline-locomotion rows were measured with its likelihood term of before issue 28
OFFLOC=(--config offline-locomotion --env HalfCheetah-v5 agent.bc_term=likelihood agent.bc_weight=200)
bench offloc-eager-t2 "${OFFLOC[@]}" --seeds 1,2,5,10 threads=2
bench offloc-eager-t1 "${OFFLOC[@]}" --seeds 1,5 threads=1
bench paper-eager-t2 --env HalfCheetah-v5 --seeds 1,5 --updates 10 threads=2 device=cpu
