#!/bin/bash
cd /work/main
while pgrep -f common.sh >/dev/null; do sleep 10; done
echo "$(date -u +%T) probe start" >> /work/runs/s14/probe.log
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 .venv/bin/python benchmarks/probe_branches.py --data /work/runs/hr-data:hr_train \
  --adapter routines/adapters/hr --limit 40 --contrast --train-steps 12 --every 6 --lr 3e-4 \
  --out /work/runs/s14/probe_contrast.json >> /work/runs/s14/probe.log 2>&1
echo "$(date -u +%T) probe done rc=$?" >> /work/runs/s14/probe.log
rm -f /work/runs/s14/STOP
cd /work/runs/s14 && setsid nohup ./common.sh > sup2.out 2>&1 &
