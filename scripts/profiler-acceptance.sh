#!/usr/bin/env bash
# Acceptance checks for `slokit profile` and `slokit gate` (docs/profiler.md).
# Speed and repeatability goals live here, never in timed unit tests.
#
#   (1) repeatability: five consecutive `slokit profile FN` runs give
#       deadlines within ±3 % of their median;
#   (2) gate sensitivity: a 10 % slower FN is flagged in ≥ 9 of 10 gate runs,
#       the unchanged FN in ≤ 1 of 10;
#   (3) profiling one function takes ≤ 46 s at the defaults (a profile spans
#       ≥ 30 s since 2026-12-01, docs/profiler.md "Deadline reproducibility")
#       and ≤ 15 s with the quick setting `--min-time 0 --max-time 12`.
#
# Usage: scripts/profiler-acceptance.sh            (FN=spin, ms 10 → 11)
#        FN=aes BASE_PARAM=length=1024 SLOW_PARAM=length=1126 scripts/profiler-acceptance.sh
# Env:   FN, BASE_PARAM (key=value or empty), SLOW_PARAM (≈ 10 % more work),
#        RUNS_GATE (default 10), SLOKIT (binary; default: release build),
#        EXTRA (extra flags for every profile/gate run, e.g. "--isolate").
set -euo pipefail

cd "$(dirname "$0")/.."
FN=${FN:-spin}
case "$FN" in
  spin) BASE_PARAM=${BASE_PARAM-ms=10}; SLOW_PARAM=${SLOW_PARAM-ms=11} ;;
  *) : "${SLOW_PARAM:?set SLOW_PARAM to a parameter that makes $FN ~10 % slower}"; BASE_PARAM=${BASE_PARAM-} ;;
esac
RUNS_GATE=${RUNS_GATE:-10}
EXTRA=${EXTRA:-}
if [[ -z "${SLOKIT:-}" ]]; then
  cargo build --release --quiet -p slokit
  SLOKIT="${CARGO_TARGET_DIR:-target}/release/slokit"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
base_args=()
[[ -n "$BASE_PARAM" ]] && base_args=(--param "$BASE_PARAM")

field() { # field FILE KEY → the first `KEY = value` in FILE
  awk -F' = ' -v k="$2" '$1 == k { print $2; exit }' "$1"
}

echo "== machine"
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "function $FN, base ${BASE_PARAM:-defaults}, slower ${SLOW_PARAM}, binary $SLOKIT"

echo "== (1) repeatability: five consecutive profiles"
deadlines=()
for i in 1 2 3 4 5; do
  "$SLOKIT" profile "$FN" "${base_args[@]}" $EXTRA --out-dir "$WORK/rep$i" >/dev/null 2>"$WORK/rep$i.log"
  d=$(field "$WORK/rep$i/$FN.toml" deadline_us)
  n=$(field "$WORK/rep$i/$FN.toml" runs)
  s=$(field "$WORK/rep$i/$FN.toml" stop_reason)
  echo "run $i: deadline_us = $d ($n runs, stopped on $s)"
  deadlines+=("$d")
done
rep=$(printf '%s\n' "${deadlines[@]}" | sort -g | awk '
  { v[NR] = $1 } END {
    m = v[3]; worst = 0
    for (i = 1; i <= NR; i++) { d = (v[i] - m) / m; if (d < 0) d = -d; if (d > worst) worst = d }
    printf "median %.1f us, worst deviation %.2f %%\n", m, worst * 100
    exit (worst <= 0.03 ? 0 : 1) }') && ok1=PASS || ok1=FAIL
echo "$rep → $ok1"

echo "== (2) gate sensitivity: $RUNS_GATE runs each"
"$SLOKIT" profile "$FN" "${base_args[@]}" $EXTRA --out-dir "$WORK/base" >/dev/null 2>&1
flag_slow=0; flag_same=0
for i in $(seq "$RUNS_GATE"); do
  set +e
  "$SLOKIT" gate "$FN" --baseline "$WORK/base" --param "$SLOW_PARAM" $EXTRA --format json --out "$WORK/slow$i.json" 2>/dev/null
  rc_slow=$?
  "$SLOKIT" gate "$FN" --baseline "$WORK/base" $EXTRA --format json --out "$WORK/same$i.json" 2>/dev/null
  rc_same=$?
  set -e
  [[ $rc_slow -eq 1 ]] && flag_slow=$((flag_slow + 1))
  [[ $rc_same -eq 1 ]] && flag_same=$((flag_same + 1))
  c_slow=$(grep -m1 '"change"' "$WORK/slow$i.json" | sed 's/.*: *//; s/,$//')
  c_same=$(grep -m1 '"change"' "$WORK/same$i.json" | sed 's/.*: *//; s/,$//')
  echo "gate $i: slower exit $rc_slow (change $c_slow), unchanged exit $rc_same (change $c_same)"
done
[[ $flag_slow -ge $(( RUNS_GATE * 9 / 10 )) && $flag_same -le $(( RUNS_GATE / 10 )) ]] && ok2=PASS || ok2=FAIL
echo "slower flagged $flag_slow/$RUNS_GATE, unchanged flagged $flag_same/$RUNS_GATE → $ok2"

echo "== (3) time to profile $FN: defaults, then --min-time 0 --max-time 12"
ok3=PASS
for setting in default quick; do
  flags=()
  [[ $setting == quick ]] && flags=(--min-time 0 --max-time 12) && limit=15 || limit=46
  start=$(date +%s.%N)
  "$SLOKIT" profile "$FN" "${base_args[@]}" "${flags[@]}" $EXTRA --out-dir "$WORK/time-$setting" >/dev/null 2>&1
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  awk -v s="$secs" -v l="$limit" 'BEGIN { exit (s <= l ? 0 : 1) }' && r=PASS || { r=FAIL; ok3=FAIL; }
  echo "$setting: $secs s (goal ≤ $limit s; $(field "$WORK/time-$setting/$FN.toml" runs) runs, stopped on $(field "$WORK/time-$setting/$FN.toml" stop_reason)) → $r"
done

echo "== summary: (1) $ok1  (2) $ok2  (3) $ok3"
[[ $ok1 == PASS && $ok2 == PASS && $ok3 == PASS ]]
