#!/bin/bash
# Queue (one job at a time): ch10 zoo predictions, then the rest of the ch09 campaign.
# Run from the repo root:  nohup nice -n 10 bash scripts/run_ch10_then_ch09.sh > /tmp/queue.log 2>&1 &
set -u
export SOFTENING_DATA_DIR=${SOFTENING_DATA_DIR:-/work/shared/data} OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=.venv/bin/python
N=${N_ZOO:-8}
echo "== zoo $(date)"
$PY -m softening_lib.tasks.model_zoo --n $N --models chgnet-0.3.0 m3gnet-mp-2021.2.8 m3gnet-matpes-pbe tensornet-matpes-pbe mace-mp-0-medium
if [ -x /tmp/sevenn_venv/bin/python ]; then
  # side environment: sevenn 0.10.4 layered over .venv (see chapter 10 / report)
  echo "== sevennet $(date)"
  /tmp/sevenn_venv/bin/python -m softening_lib.tasks.model_zoo --n $N --models softening_lib.tasks.model_zoo:sevennet0
fi
echo "== ch09 fine-tune seed 1 $(date)"
$PY -m softening_lib.tasks.fine_tuning --epochs 30 --ns 1 2 5 10 --seeds 0 1 --scratch-seeds 0
echo "== ch09 scratch seed 1 $(date)"
$PY -m softening_lib.tasks.fine_tuning --epochs 30 --ns 1 2 5 10 --seeds 0 1 --scratch-seeds 0 1
echo "== ch09 100 epochs $(date)"
$PY -m softening_lib.tasks.fine_tuning --epochs 100 --ns 1 10 --seeds 0 --scratch-seeds 0
echo "QUEUE DONE $(date)"
