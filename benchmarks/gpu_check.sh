#!/usr/bin/env bash
# The CUDA core's proof on a lent GPU machine, in one command (issue 17).
#
#   bash benchmarks/gpu_check.sh OUT_DIR [--cpu] [--deadline SECONDS] [--only STEPS]
#        [--bench-envs ENVS] [--bench-precisions PRECISIONS] [--train-precision PRECISION]
#
# Steps, each logged to OUT_DIR/log.txt and none stopping the next:
#   1. the CUDA tests (tests/test_cuda.py: graph replay = eager to 1e-5, capturable Adam,
#      sampling on the device with no host sync, the eager fallback, a whole CUDA run);
#   2. `alm bench --device cuda` in fp32 and bf16 at paper defaults, HalfCheetah-v5 and
#      Humanoid-v5 dims (updates/s, env steps/s of the online loop, CUDA max allocated);
#   fused (issue 25): `alm bench --compare-fused --profile` at paper defaults, HalfCheetah-v5
#      dims, in each of --fused-precisions: eager and fused (graphed) updates/s in one run,
#      the compile time, kernels per update of the fused update (rows of bench.jsonl);
#   seeds (issue 27): `alm bench --seeds 1,5` at paper defaults, HalfCheetah-v5 dims: five
#      seeds in one process against one (seed-updates/s, seed env-steps/s; seeds.json);
#   3. HalfCheetah-v5 online at paper defaults for 20k env steps, seeds 1-5 in one process
#      (seeds=1,2,3,4,5), evaluated on the reference's protocol (eval.latent=sample);
#   4. as much of a 100k-step HalfCheetah-v5 run (seed 1) as the deadline leaves;
#   profile (only when named in --only): benchmarks/gpu_profile.py --fused in fp32 and bf16
#      (kernels per update eager and fused).
# It writes at most 8 files: system.json, log.txt, tests.txt, bench.jsonl, seeds.json,
# fidelity.json, long.json, summary.md (benchmarks/gpu_report.py builds the last three;
# profile.txt replaces seeds.json when asked for). Run dirs go to
# a scratch folder, not OUT_DIR. Wheels in .whl (benchmarks/gpu_wheels.py) are installed
# first when gymnasium is missing, as on the GPU machines.
#
# --cpu: the same steps at toy sizes on the CPU, in a minute or so (tests/test_gpu_check.py
# runs it, so the script never rots). --deadline: seconds for the whole check (default 420).
# --only: comma-separated steps of tests,bench,seeds,fused,fidelity,long,profile (default all but
# profile). --fused-precisions: comma list (default fp32: on CUDA each precision's cold
# Triton compile costs minutes of the device call, and with --cpu a cold Inductor compile
# half a minute of the suite).
# --bench-envs / --bench-precisions: comma lists (HalfCheetah-v5,Humanoid-v5 / fp32,tf32,bf16).
# --train-precision: agent.precision of the training runs (default fp32).
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR [--cpu] [--deadline SECONDS]}
shift
MODE=cuda
DEADLINE=420
ONLY=tests,bench,seeds,fused,fidelity,long
FUSED_PRECISIONS=fp32
BENCH_ENVS=HalfCheetah-v5,Humanoid-v5
BENCH_PRECISIONS=fp32,tf32,bf16
TRAIN_PRECISION=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --deadline) DEADLINE=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --bench-envs) BENCH_ENVS=$2; shift ;;
    --bench-precisions) BENCH_PRECISIONS=$2; shift ;;
    --train-precision) TRAIN_PRECISION=$2; shift ;;
    --fused-precisions) FUSED_PRECISIONS=$2; shift ;;
    *) echo "error: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
source benchmarks/device_setup.sh
open_out_dir alm-gpu-check
install_carried_wheels

if [ "$MODE" = cuda ]; then
  DEVICE=cuda
  AGENT=()
  THREADS=4
  BENCH_UPDATES=2000
  FUSED_TIMEOUT=300
  FIDELITY_STEPS=20000; EVAL_EVERY=5000; EVAL_EPISODES=5
  LONG_STEPS=100000; LONG_EVAL_EVERY=25000
else
  DEVICE=cpu
  AGENT=(agent.batch_size=16 agent.hidden_dim=32 agent.model_hidden_dim=32 agent.latent_dim=8
    agent.warmup_steps=200 agent.buffer_size=5000)
  THREADS=1
  BENCH_UPDATES=10
  FUSED_TIMEOUT=240
  FIDELITY_STEPS=500; EVAL_EVERY=250; EVAL_EPISODES=1
  LONG_STEPS=800; LONG_EVAL_EVERY=400
fi

say "mode $MODE, deadline ${DEADLINE}s, scratch $SCRATCH"
write_system_json "$OUT/system.json"

if wanted profile; then
  for precision in fp32 bf16; do
    say "profile $precision"
    timeout 240 $PYTHON benchmarks/gpu_profile.py --fused --precision "$precision" >>"$OUT/profile.txt" 2>&1
    say "profile exit $?: $(grep -m 1 '^precision' "$OUT/profile.txt" | tail -n 1)"
  done
fi

if wanted tests; then
say "1. CUDA tests"
timeout 240 $PYTHON -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py >"$OUT/tests.txt" 2>&1
say "tests exit $?: $(tail -n 1 "$OUT/tests.txt")"
fi

: >"$OUT/bench.jsonl"
# bench_row SECONDS LABEL ARGS...: one `alm bench --json` on this check's device, threads and
# agent sizes, its result appended to bench.jsonl as one line
bench_row() {
  local limit=$1 label=$2 status
  shift 2
  timeout "$limit" $PYTHON -m cli bench --device "$DEVICE" --updates "$BENCH_UPDATES" --json \
    "threads=$THREADS" "${AGENT[@]}" "$@" >"$SCRATCH/bench.json" 2>>"$LOG"
  status=$?
  if [ $status -eq 0 ]; then
    $PYTHON -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" \
      "$SCRATCH/bench.json" >>"$OUT/bench.jsonl"
  fi
  say "$label exit $status"
}

if wanted bench; then
say "2. alm bench"
for env in ${BENCH_ENVS//,/ }; do
  for precision in ${BENCH_PRECISIONS//,/ }; do
    bench_row 90 "bench $env $precision" --env "$env" "agent.precision=$precision"
  done
done
fi

if wanted seeds; then
say "seeds: alm bench --seeds 1,5 (N seeds in one process against one)"
timeout "$FUSED_TIMEOUT" $PYTHON -m cli bench --device "$DEVICE" --updates "$BENCH_UPDATES" \
  --json --seeds 1,5 --env HalfCheetah-v5 "threads=$THREADS" "${AGENT[@]}" \
  >"$OUT/seeds.json" 2>>"$LOG"
say "seeds bench exit $?"
fi

if wanted fused; then
say "fused update (eager, then fused, in one alm bench)"
for precision in ${FUSED_PRECISIONS//,/ }; do
  bench_row "$FUSED_TIMEOUT" "fused $precision" --env HalfCheetah-v5 --compare-fused --profile \
    "agent.precision=$precision"
done
fi

RUNS=$SCRATCH/runs
TRAIN=(--quiet "device=$DEVICE" "threads=$THREADS" eval.latent=sample
  "eval.episodes=$EVAL_EPISODES" checkpoint_every=1000000 "agent.precision=$TRAIN_PRECISION"
  "${AGENT[@]}")
if wanted fidelity; then
LEFT=$((DEADLINE - SECONDS - 15))
say "3. HalfCheetah-v5, ${FIDELITY_STEPS} env steps, seeds 1-5 in one process, ${LEFT}s left"
timeout "$LEFT" $PYTHON -m cli train-online --config online "${TRAIN[@]}" seeds=1,2,3,4,5 \
  "steps=$FIDELITY_STEPS" "eval.every=$EVAL_EVERY" "run_dir=$RUNS/fidelity" \
  >"$SCRATCH/fidelity.out" 2>&1
say "seeds 1-5 exit $? (124: stopped at the deadline)"
fi

LEFT=$((DEADLINE - SECONDS - 15))
if wanted long && [ $LEFT -gt 10 ]; then
  say "4. HalfCheetah-v5 toward ${LONG_STEPS} env steps, ${LEFT}s left"
  timeout "$LEFT" $PYTHON -m cli train-online --config online "${TRAIN[@]}" seed=1 \
    "steps=$LONG_STEPS" "eval.every=$LONG_EVAL_EVERY" "run_dir=$RUNS/long" \
    >"$SCRATCH/long.out" 2>&1
  say "long run exit $? (124: stopped at the deadline)"
fi

$PYTHON benchmarks/gpu_report.py "$OUT" "$RUNS" >>"$LOG" 2>&1
say "report exit $?; done in ${SECONDS}s"
rm -rf "$SCRATCH"
