#!/bin/bash
# Queue (one job at a time): wait for the running ch09 step, then the ch10 zoo predictions,
# then the rest of the ch09 campaign. Run from the repo root with nice -n 10.
set -u
export SOFTENING_DATA_DIR=${SOFTENING_DATA_DIR:-/work/shared/data} OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
WAIT_PID=${1:-}
if [ -n "$WAIT_PID" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 15; done; fi
PY=.venv/bin/python
echo "== zoo $(date)"
$PY -m softening_lib.tasks.model_zoo --n 25 --models chgnet-0.3.0 m3gnet-mp-2021.2.8 m3gnet-matpes-pbe tensornet-matpes-pbe mace-mp-0-medium
if [ -x /tmp/sevenn_venv/bin/python ]; then
  echo "== sevennet $(date)"
  /tmp/sevenn_venv/bin/python -m softening_lib.tasks.model_zoo --n 25 --models softening_lib.tasks.model_zoo:sevennet0
fi
echo "== ch09 seeds 0 1 $(date)"
$PY -m softening_lib.tasks.fine_tuning --epochs 30 --ns 1 2 5 10 --seeds 0 1 --scratch-seeds 0 1
echo "== ch09 100 epochs $(date)"
$PY -m softening_lib.tasks.fine_tuning --epochs 100 --ns 1 10 --seeds 0 --scratch-seeds 0
echo "QUEUE DONE $(date)"
