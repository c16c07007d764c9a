#!/usr/bin/env bash
# Build GPAW from a kit, then run the chapter 4/5 GPAW queue (scripts/gpaw_solid_solution_migration.py,
# on the Dask executor: one call, a LocalCluster of one single-threaded worker per core) until a
# deadline; finished records are packed for copying back. From the repo root:
#     bash scripts/gpaw_portable/run_queue.sh KIT SECONDS STAGE...     (e.g. KIT 540 solid-static mig-static)
# An item cut off by the deadline leaves nothing (records are written atomically); rerunning the
# queue anywhere skips every finished item. Records name the machine in "host".
# SECONDS must cover the build (~30 s) plus at least one item per worker: a 16-atom chapter-4 cell took
# 130-320 s per core with 16 workers busy (a 195 s run finished nothing; a 545 s run finished 25 cells).
T0=$(date +%s); KIT=$1; TOTAL=$2; shift 2
N=$(env -u OMP_NUM_THREADS nproc)
OUTD=${OUT:-/tmp/gpaw_portable_out}; mkdir -p "$OUTD"
export PYTHONUNBUFFERED=1
PY=${PY:-$(command -v python3)}
echo "python: $PY $($PY -V)  cores: $N"
touch /tmp/gpaw_portable_t0
bash scripts/gpaw_portable/build.sh "$KIT" "$PY" /tmp/gpaw_site /tmp/gpaw_work > "$OUTD/build.log" 2>&1 \
  || { echo "GPAW build failed:"; tail -40 "$OUTD/build.log"; exit 1; }
echo "built in $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/gpaw_site LD_LIBRARY_PATH=/tmp/gpaw_work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GPAW_SETUP_PATH=$(cd "$KIT" && pwd)/setups
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HF_HUB_OFFLINE=1 SOFTENING_GPAW_LOCK=0
"$PY" -c "import gpaw, gpaw.fftw as f; print('gpaw', gpaw.__version__, 'fftw', f.have_fftw())" || exit 1
# relaxations start from a CHGNet pre-relaxation where chgnet is installed, from the interpolation otherwise
WARM=$("$PY" -c "import chgnet" > /dev/null 2>&1 && echo chgnet-0.3.0 || echo none)
LEFT=$(( TOTAL - ($(date +%s) - T0) - 25 ))
echo "running $N workers for $LEFT s (warm start: $WARM)"
mkdir -p /tmp/gpaw_portable_logs
# one Dask client, N worker processes, in their own process group: at the deadline the whole group
# (client, nannies, workers) is stopped; finished records stay, a cut-off item leaves nothing
setsid "$PY" scripts/gpaw_solid_solution_migration.py --stage "$@" --workers "$N" --warm-start "$WARM" \
  > /tmp/gpaw_portable_logs/queue.log 2>&1 &
QPID=$!
( sleep "$LEFT"; kill -TERM -- "-$QPID" 2>/dev/null; sleep 10; kill -KILL -- "-$QPID" 2>/dev/null ) &
KPID=$!
wait "$QPID"; kill "$KPID" 2>/dev/null
find data/reference -newer /tmp/gpaw_portable_t0 -type f -name '*.json' > /tmp/gpaw_portable_new.txt
echo "new records: $(wc -l < /tmp/gpaw_portable_new.txt)"
tar czf "$OUTD/records.tgz" -T /tmp/gpaw_portable_new.txt
tar czf "$OUTD/logs.tgz" -C /tmp gpaw_portable_logs
grep -h " ok \| failed" /tmp/gpaw_portable_logs/*.log
echo "total $(( $(date +%s) - T0 )) s"
