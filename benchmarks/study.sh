#!/usr/bin/env bash
# The issue-#11 study (docs/bench_toy_sentiment.md): efficacy–fidelity frontiers of GA, GD,
# NPO, SO × full / MAPE / SURE / random at 90 % sparsity, 3 seeds, on toy-sentiment (4-layer)
# and toy-sentiment-small (2-layer), then MAPE-GD's frontier per sparsity (Fig. 2) and per
# granularity (Fig. 7) by the same rule (benchmarks/study_settings.py; GD, not GA: GA has no
# retain term and collapses the 4-layer model at every grid point).
# Reductions (time on a shared 2-core machine), stated in the doc: grid 0.25,1,4 (3 of the
# default 6 factors), evaluation capped at 1000 rows per split (D_r has 3968), SO's Fisher on
# 1024 retain rows. Each method is its own command so a partial study still leaves results.
# Usage: bash benchmarks/study.sh [OUT]   (default benchmarks/results/study)
set -euo pipefail
export HF_HUB_OFFLINE=1
OUT=${1:-benchmarks/results/study}
GRID=${GRID:-0.25,1,4}
COMMON=(--experiments frontier --selectors full,mape,sure,random --sparsity 0.9 --seeds 0,1,2
        --grid "$GRID" --eval-max-samples 1000 --override so:fisher_max_samples=1024
        --threads 1 --quiet --overwrite)
run() {  # task method
  local task=$1 m=$2 d="$OUT/$1/$2"
  mkdir -p "$OUT/$task"
  /usr/bin/time -f "wall %e s, user %U s, %P CPU, max RSS %M KiB" -o "$d.time" \
    mape-viz bench --task "$task" --methods "$m" "${COMMON[@]}" --out "$d" > "$d.log" 2>&1
  echo "$(date -u +%H:%M:%S) $task $m: $(cat "$d.time") load: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee -a "$OUT/timings.txt"
}
STEPS=${STEPS:-"toy-sentiment:ga toy-sentiment-small:ga toy-sentiment:gd settings toy-sentiment-small:gd toy-sentiment-small:npo toy-sentiment-small:so toy-sentiment:so toy-sentiment:npo"}
for s in $STEPS; do
  if [ "$s" = settings ]; then
    for seed in ${SETTINGS_SEEDS:-0 1}; do
      d=settings; [ "$seed" = 0 ] || d=settings-seed$seed
      /usr/bin/time -f "wall %e s, user %U s, %P CPU, max RSS %M KiB" -o "$OUT/$d.time" \
        python benchmarks/study_settings.py --out "$OUT/$d" --grid "$GRID" --seeds "$seed" \
        --method "${SETTINGS_METHOD:-gd}" --sparsities "${SETTINGS_SPARSITIES:-0.5,0.95}" \
        > "$OUT/$d.log" 2>&1
      echo "$(date -u +%H:%M:%S) $d: $(cat "$OUT/$d.time") load: $(cut -d' ' -f1-3 /proc/loadavg)" \
        | tee -a "$OUT/timings.txt"
    done
  else
    run "${s%%:*}" "${s##*:}"
  fi
done
python benchmarks/study_tables.py "$OUT"
