#!/bin/bash
# Queue (one job at a time): chapter 10 zoo records on chapter 7's frames, then the missing
# chapter 9 learning-curve seeds (cheap sizes first). Resumable: finished records are kept.
# Run from the repo root:  nohup nice -n 10 bash scripts/run_ch10_then_ch09.sh > /tmp/queue.log 2>&1 &
# Skip parts with ZOO=0 or CH09=0.
set -u
export SOFTENING_DATA_DIR=${SOFTENING_DATA_DIR:-/work/shared/data} OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
PY=.venv/bin/python
# the registry's zoo (softening_lib/models.yml, tag "zoo"), those that run here
ZM=$($PY -c 'from softening_lib import models; print(" ".join(models.runnable(models.tagged("zoo"))[0]))')
if [ "${ZOO:-1}" = 1 ]; then
  # the small sets model by model; JaGeo (slow to read) once for all models
  for M in $ZM; do
    echo "== zoo $M $(date)"
    $PY -m softening_lib.tasks.model_zoo --preset default --models $M --datasets wbm-he-gpaw phonondb-pbesol --no-count
  done
  echo "== zoo jageo $(date)"
  $PY -m softening_lib.tasks.model_zoo --preset default --models $ZM --datasets jageo-pbe-68 --no-count
  echo "== zoo summary (counts parameters) $(date)"
  $PY -m softening_lib.tasks.model_zoo --preset default --models $ZM --datasets wbm-he-gpaw phonondb-pbesol jageo-pbe-68
fi
if [ "${CH09:-1}" = 1 ]; then
  M="-m softening_lib.tasks.fine_tuning --epochs 30"
  echo "== ch09 fine-tune seeds 1-2, N <= 5 $(date)"
  $PY $M --ns 1 2 5 --seeds 0 1 2 --scratch-seeds 0
  echo "== ch09 scratch seed 1, N <= 5 $(date)"
  $PY $M --ns 1 2 5 --seeds 0 1 2 --scratch-seeds 0 1
  echo "== ch09 N = 10, seeds 1-2 $(date)"
  $PY $M --ns 1 2 5 10 --seeds 0 1 2 --scratch-seeds 0 1
fi
echo "QUEUE DONE $(date)"
