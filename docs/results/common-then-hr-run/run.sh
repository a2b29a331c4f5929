#!/bin/bash
# Issue 18 (b): the common adapter (CFB, step 20) continued on HR data with the schedule of the HR-only run whose
# step-46 adapter is /work/runs/adapter-hr-step46-backup: cpu preset, HR records + extraction (no variants),
# planned for 80 steps until step 15, then resumed with --max-steps 55; stopped after step 46.
cd /work/main
OUT=/work/runs/adapter-common-hr
step() { [ -f $OUT/metrics.jsonl ] && grep -q "\"step\": $1," $OUT/metrics.jsonl; }
run_until() {  # run the command in the background until metrics show step $1, then stop it
  local until=$1; shift
  setsid "$@" >> /work/runs/b18_train.log 2>&1 &
  local TP=$!
  while kill -0 $TP 2>/dev/null; do
    if step $until; then sleep 3; kill -- -$TP; sleep 5; break; fi
    sleep 5
  done
}
if ! step 16; then
  run_until 16 .venv/bin/routine train --out $OUT --init-adapter /work/runs/adapter-common --data /work/runs/hr-data:hr_train \
      --extraction hr --extraction-variants 0 --preset cpu --max-steps 80 --save-every 15 --no-progress
  # drop the 16th step (it ran on the 80-step schedule); the checkpoint is at 15
  head -15 $OUT/metrics.jsonl > $OUT/m.tmp && mv $OUT/m.tmp $OUT/metrics.jsonl
fi
if ! step 47; then
  run_until 47 .venv/bin/routine train --out $OUT --resume --max-steps 55 --save-every 2 --no-progress
fi
echo "training stopped $(date)"
E=".venv/bin/routine eval --scenario hr --split test --config routine_branch --backend local --dtype bfloat16 --workers 2 --seed 0 --tools-in-prompt routine --constrain next --no-progress"
ROUTINE_DATA_DIR=/tmp/rt $E --adapter $OUT --out docs/results/hr-common-then-hr > /work/runs/b18_eval1.log 2>&1
echo "eval b done $(date)"
ROUTINE_DATA_DIR=/tmp/rt $E --adapter /work/runs/adapter-hr-step46-backup --out docs/results/hr-only-step46 > /work/runs/b18_eval2.log 2>&1
echo "eval hr46 done $(date)"
