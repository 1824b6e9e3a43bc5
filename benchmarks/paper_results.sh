#!/usr/bin/env bash
# The paper's results on one GPU (issue 29), in one command of at most --deadline seconds:
#
#   bash benchmarks/paper_results.sh OUT_DIR [--cpu] [--deadline SECONDS] [--resume]
#        [--envs ENVS] [--steps N] [--max-steps N] [--seeds LIST] [--only STEPS] [--runs DIR]
#
#   1. tests: the CUDA tests (tests/test_cuda.py) -> tests.txt;
#   2. bench: `alm bench --seeds 1,5` with the fused update (agent.compile=on; replayed from a
#      CUDA graph on CUDA): one seed's updates/s and five seeds' seed-updates/s in one run
#      -> seeds.json;
#   3. runs: per env of ENVS in order (default HalfCheetah-v5,Hopper-v5,Walker2d-v5), the
#      seeds in one process (seeds=1,2,3,4,5) at paper defaults (configs/online.yaml),
#      evaluated as the reference does (5 deterministic episodes every 5000 env steps, acting
#      on a latent sample: eval.latent=sample), to --steps env steps (default 20000); then,
#      round after round, each env on by another --steps (up to --max-steps, default 205000:
#      the paper's 200k updates) until the deadline. A run stopped by the deadline keeps its
#      last checkpoint (every 5000 env steps) and its evaluations up to it;
#   4. report (always): results.json, results.md, curves.png (benchmarks/paper_report.py):
#      per env and evaluation, mean ± standard error over seeds beside the published mean at
#      the same env step (published x + 5000 warm-up steps), the ratio, the spreads.
#
# OUT_DIR gets 7 files (the device tool returns at most 8): system.json, log.txt, tests.txt,
# seeds.json, results.json, results.md, curves.png. The runs go to --runs DIR (default
# ~/.cache/alm-paper-runs), where a later call on the same machine finds them: --resume continues them (an unfinished run from its checkpoint to its steps or
# --max-steps, a finished one on by --steps); without --resume an existing DIR is refused.
# Their checkpoints (the agent state alone 75 MiB at paper sizes for five seeds, before the
# replay) are too big to come back from a device call, so a later session starts again.
#
# --cpu: the same steps at toy sizes on the CPU (eager update) in about a minute (tests/test_paper_results.py
# runs it, and a --resume after it). --only: comma list of tests,bench,runs (default all).
#
# Refused before anything is written (one error line, exit 2): no CUDA GPU without --cpu; an
# OUT_DIR or runs DIR that is /, or inside the repository (its tracked files are never
# written); relative paths are taken from the caller's folder.
set -u
# every flag is parsed and checked before any folder is made: one error line, exit 2
fail() { echo "error: $*" >&2; exit 2; }
positive() { [[ "$2" =~ ^[1-9][0-9]{0,8}$ ]] || fail "$1 must be a positive integer below 1e9, got '$2'"; }
# absolute PATH from the caller's folder, without following what does not exist yet
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
USAGE="usage: paper_results.sh OUT_DIR [--cpu] [--deadline SECONDS] [--resume] [--envs ENVS] [--steps N] [--max-steps N] [--seeds LIST] [--only STEPS] [--runs DIR]"
[ $# -gt 0 ] || fail "OUT_DIR is required ($USAGE)"
OUT=$1
[ -n "$OUT" ] || fail "OUT_DIR must not be empty"
[[ "$OUT" != -* ]] || fail "OUT_DIR comes first and is not an option, got '$OUT' ($USAGE)"
shift
MODE=cuda
DEADLINE=510
RESUME=0
ENVS=HalfCheetah-v5,Hopper-v5,Walker2d-v5
STEPS=
MAX_STEPS=
SEEDS=1,2,3,4,5
ONLY=tests,bench,runs
RUNS=
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; shift; continue ;;
    --resume) RESUME=1; shift; continue ;;
    --deadline|--envs|--steps|--max-steps|--seeds|--only|--runs)
      [ $# -ge 2 ] && [[ "$2" != --* ]] || fail "$1 needs a value" ;;
    *) fail "unknown option '$1' ($USAGE)" ;;
  esac
  case "$1" in
    --deadline) positive --deadline "$2"; DEADLINE=$2 ;;
    --envs) ENVS=$2 ;;
    --steps) positive --steps "$2"; STEPS=$2 ;;
    --max-steps) positive --max-steps "$2"; MAX_STEPS=$2 ;;
    --seeds) SEEDS=$2 ;;
    --only) ONLY=$2 ;;
    --runs) RUNS=$2 ;;
  esac
  shift 2
done
[[ "$SEEDS" =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "--seeds must be comma-separated integers, got '$SEEDS'"
[ -z "$(tr ',' '\n' <<<"$SEEDS" | sort | uniq -d)" ] || fail "--seeds must be distinct, got '$SEEDS'"
[[ "$ENVS" =~ ^[A-Za-z0-9_./:-]+(,[A-Za-z0-9_./:-]+)*$ ]] || fail "--envs must be comma-separated env ids, got '$ENVS'"
for step in ${ONLY//,/ }; do
  [[ ",tests,bench,runs," == *",$step,"* ]] || fail "--only takes tests, bench, runs; got '$step'"
done
[[ "$ONLY" =~ ^[a-z]+(,[a-z]+)*$ ]] || fail "--only must be a comma-separated list, got '$ONLY'"
if [ -n "$STEPS" ] && [ -n "$MAX_STEPS" ] && [ "$MAX_STEPS" -lt "$STEPS" ]; then
  fail "--max-steps ($MAX_STEPS) must be at least --steps ($STEPS)"
fi
[ "$DEADLINE" -gt 30 ] || fail "--deadline must leave time for the report (more than 30 s), got $DEADLINE"
OUT=$(absolute "$OUT")
RUNS=$(absolute "${RUNS:-${XDG_CACHE_HOME:-$HOME/.cache}/alm-paper-runs}")
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
for what in OUT_DIR:$OUT "--runs:$RUNS"; do
  name=${what%%:*} path=${what#*:}
  real=$(realpath -m "$path")
  [ "$real" != / ] || fail "$name must not be /"
  case "$real/" in
    "$REPO"/*) fail "$name '$path' is inside the repository ($REPO): give a folder outside it" ;;
  esac
done
if [ -e "$RUNS" ] && [ $RESUME -eq 0 ]; then
  fail "'$RUNS' exists: pass --resume to continue its runs, or remove it"
fi
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ "$MODE" = cuda ] && ! $PYTHON -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  fail "no CUDA GPU here (torch.cuda.is_available() is False): run it on a GPU machine, or pass --cpu"
fi
source benchmarks/device_setup.sh
open_scratch alm-paper
install_carried_wheels
# the env ids, as soon as gymnasium can be imported: before OUT, the runs folder or any run
if ! unknown=$($PYTHON -c "
import sys, gymnasium as gym
for env in sys.argv[1].split(','):
    try:
        gym.spec(env)
    except Exception:
        print(env)
        break
" "$ENVS" 2>>"$LOG") || [ -n "$unknown" ]; then
  echo "error: --envs: gymnasium knows no env '${unknown:-$ENVS}'" >&2
  rm -rf "$SCRATCH"
  exit 2
fi
open_out
mkdir -p "$RUNS"
RUNS=$(cd "$RUNS" && pwd)
FAILED=()  # the steps that failed (a run stopped by the deadline, exit 124, has not)

if [ "$MODE" = cuda ]; then
  DEVICE=cuda
  THREADS=4
  AGENT=()
  BENCH_UPDATES=1000
  FUSED=agent.compile=on
  STEPS=${STEPS:-20000}; MAX_STEPS=${MAX_STEPS:-205000}
  EVAL=(eval.every=5000 eval.episodes=5 checkpoint_every=5000)
else
  DEVICE=cpu
  THREADS=1
  AGENT=(agent.batch_size=16 agent.hidden_dim=32 agent.model_hidden_dim=32 agent.latent_dim=8
    agent.warmup_steps=100 agent.buffer_size=2000)
  BENCH_UPDATES=10
  FUSED=agent.compile=off  # a cold Inductor compile would cost the suite minutes
  STEPS=${STEPS:-200}; MAX_STEPS=${MAX_STEPS:-400}
  EVAL=(eval.every=100 eval.episodes=1 checkpoint_every=100)
fi
REPORT_RESERVE=25  # seconds kept for the report

say "mode $MODE, deadline ${DEADLINE}s, runs $RUNS, resume $RESUME"
write_system_json "$OUT/system.json"

if wanted tests && [ "$MODE" = cuda ]; then
  say "1. CUDA tests"
  timeout 150 $PYTHON -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py >"$OUT/tests.txt" 2>&1
  status=$?
  say "tests exit $status: $(tail -n 1 "$OUT/tests.txt")"
  [ $status -eq 0 ] || FAILED+=(tests)
fi

if wanted bench; then
  say "2. alm bench --seeds 1,5, fused"
  timeout 200 $PYTHON -m cli bench --device "$DEVICE" --updates "$BENCH_UPDATES" --json \
    --seeds 1,5 --env HalfCheetah-v5 "$FUSED" "threads=$THREADS" "${AGENT[@]}" \
    >"$OUT/seeds.json" 2>>"$LOG"
  status=$?
  say "bench exit $status"
  [ $status -eq 0 ] || FAILED+=(bench)
fi

# stage ENV: train ENV's run one stage on (new, continued, or extended by STEPS) within what
# the deadline leaves; returns 1 when nothing is left to do for ENV
stage() {
  local env=$1 dir=$RUNS/$1 progress left args status
  progress=$($PYTHON benchmarks/paper_report.py --progress "$dir") || return 1
  case "$progress" in
    new) args=(--config online "device=$DEVICE" "threads=$THREADS" eval.latent=sample
      "${EVAL[@]}" "${AGENT[@]}" "seeds=$SEEDS" "env=$env" "steps=$STEPS" "run_dir=$dir") ;;
    unfinished\ *)
      local planned=${progress#unfinished }
      args=(--resume "$dir" "steps=$((planned < MAX_STEPS ? planned : MAX_STEPS))") ;;
    finished\ *)
      local reached=${progress#finished }
      [ "$reached" -lt "$MAX_STEPS" ] || return 1
      local next=$((reached + STEPS))
      args=(--resume "$dir" "steps=$((next < MAX_STEPS ? next : MAX_STEPS))") ;;
    *) say "$env: cannot read '$dir' ($progress)"; FAILED+=("runs ($env)"); return 1 ;;
  esac
  left=$((DEADLINE - SECONDS - REPORT_RESERVE))
  say "$env: $progress -> train-online ${args[*]:0:2}, ${left}s left"
  timeout "$left" $PYTHON -m cli train-online --quiet "${args[@]}" >>"$SCRATCH/$env.out" 2>&1
  status=$?
  say "$env exit $status (124: stopped at the deadline)"
  [ $status -eq 0 ] && return 0
  if [ $status -ne 124 ]; then
    tail -n 5 "$SCRATCH/$env.out" >>"$LOG"
    FAILED+=("runs ($env)")
  fi
  return 1
}

if wanted runs; then
  say "3. the runs: $ENVS, seeds $SEEDS, by $STEPS env steps up to $MAX_STEPS"
  busy=1
  while [ $busy -eq 1 ]; do
    busy=0
    for env in ${ENVS//,/ }; do
      [ $((DEADLINE - SECONDS - REPORT_RESERVE)) -gt 10 ] || break 2
      stage "$env" && busy=1
    done
  done
fi

say "4. report"
$PYTHON benchmarks/paper_report.py "$OUT" "$RUNS" >>"$LOG" 2>&1
status=$?
[ $status -eq 0 ] || FAILED+=(report)
say "report exit $status; done in ${SECONDS}s"
rm -rf "$SCRATCH"
if [ ${#FAILED[@]} -gt 0 ]; then
  say "failed: ${FAILED[*]} (details in $LOG)"
  exit 1
fi
