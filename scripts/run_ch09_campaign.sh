#!/bin/bash
# Chapter 9 fine-tuning campaign (CHGNet 0.3.0 on the default frames), resumable, priority order.
# Run from the repo root:  nohup nice -n 10 bash scripts/run_ch09_campaign.sh > /tmp/ch09_campaign.log 2>&1 &
set -u
export SOFTENING_DATA_DIR=${SOFTENING_DATA_DIR:-/work/shared/data} OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=.venv/bin/python
M="-m softening_lib.tasks.fine_tuning"
# learning curve (30 epochs), seed by seed
$PY $M --epochs 30 --ns 1 2 5 10 --seeds 0 --scratch-seeds 0
$PY $M --epochs 30 --ns 1 2 5 10 --seeds 0 1 --scratch-seeds 0 1
# the paper's protocol (100 epochs): headline fine-tunes
$PY $M --epochs 100 --ns 1 10 --seeds 0 --scratch-seeds 0
$PY $M --epochs 30 --ns 1 2 5 10 --seeds 0 1 2 --scratch-seeds 0 1
echo CAMPAIGN DONE
