#!/usr/bin/env bash
# Item 4 of issue 40: App. A.7's BC weight and indexing against today's form, on the old
# suite's halfcheetah-medium-replay (seeds 1-3, 10000 updates), two variants at a time.
cd "$(dirname "$0")/.."
D=alm-suite/halfcheetah/medium-replay-v0
mkdir -p runs/item4
run() {  # NAME OVERRIDES...
  name=$1; shift
  if [ -f runs/item4/$name/summary.json ]; then return; fi
  if [ -d runs/item4/$name ]; then
    alm train-offline --resume runs/item4/$name --quiet > runs/item4/$name.log 2>&1
  else
    alm train-offline --dataset $D --config offline-locomotion seeds=1,2,3 threads=1 \
      run_dir=runs/item4/$name --quiet "$@" > runs/item4/$name.log 2>&1
  fi
}
run today &
run bound agent.bc_relative_to_kl=true agent.bc_index=t+1 &
wait
run ratio agent.bc_relative_to_kl=true &
run index agent.bc_index=t+1 &
wait
echo all done
python benchmarks/offline_bc_form_table.py
