#!/usr/bin/env bash
# Acceptance of the paired gate, `slokit gate FN --against OLD` (docs/profiler.md,
# "Paired gating"; issue 15): on the same shared machine,
#
#   (1) a 10 % slower FN (default: aes with --param iterations=440 against
#       its default 400) is flagged in ≥ 9 of 10 runs;
#   (2) an unchanged FN is flagged in ≤ 1 of 10 runs;
#   (3) the time of one gate run (target: ≤ 30 s).
#
# The two series alternate (slower, unchanged, slower, ...) so both see the
# same stretch of the machine's drift. Every line carries the time and the
# 1-minute load average; the summary carries the date.
#
# Usage: scripts/gate-against-acceptance.sh
#        OLD=/tmp/old/target/release/slokit scripts/gate-against-acceptance.sh
#        SMOKE=1 scripts/gate-against-acceptance.sh     (one short run of each)
# Env:   FN (default aes), SLOW_PARAM (default iterations=440 for aes),
#        RUNS (default 10), SLOKIT (the new binary; default: release build),
#        OLD (the old binary; default: the same binary, i.e. an unchanged
#        build — for a real old build: `git worktree add /tmp/old COMMIT &&
#        cargo build --release --manifest-path /tmp/old/Cargo.toml`),
#        EXTRA (extra gate flags, e.g. "--isolate" or "--max-time 8").
set -euo pipefail

cd "$(dirname "$0")/.."
FN=${FN:-aes}
case "$FN" in
  aes) SLOW_PARAM=${SLOW_PARAM:-iterations=440} ;;
  spin) SLOW_PARAM=${SLOW_PARAM:-ms=11} ;;
  *) : "${SLOW_PARAM:?set SLOW_PARAM to a parameter that makes $FN ~10 % slower}" ;;
esac
RUNS=${RUNS:-10}
EXTRA=${EXTRA:-}
if [[ -n "${SMOKE:-}" ]]; then
  RUNS=1
  EXTRA="--max-time 2 --warmup 2 $EXTRA"
fi
if [[ -z "${SLOKIT:-}" ]]; then
  cargo build --release --quiet -p slokit
  SLOKIT="${CARGO_TARGET_DIR:-target}/release/slokit"
fi
OLD=${OLD:-$SLOKIT}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/base" # empty: both sides start from the function's defaults

load() { cut -d' ' -f1 /proc/loadavg; }
json() { # json FILE KEY → the first numeric or string value of "KEY"
  grep -m1 "\"$2\"" "$1" | sed 's/.*: *//; s/,$//; s/"//g'
}
ci() { # ci FILE → "[lo, hi]" of change_ci in %
  tr -d ' \n' <"$1" | sed -n 's/.*"change_ci":\[\([^,]*\),\([^]]*\)\].*/\1 \2/p' |
    awk '{ printf "[%+.1f %%, %+.1f %%]", $1 * 100, $2 * 100 }'
}

echo "== machine"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "function $FN, slower: --param $SLOW_PARAM; new $SLOKIT, old $OLD; extra: ${EXTRA:-none}"

flag_slow=0
flag_same=0
times=()
run() { # run KIND I [PARAM...] → sets RC; prints one line
  local kind=$1 i=$2
  shift 2
  local out="$WORK/$kind$i.json" t0 t1 rc
  t0=$(date +%s.%N)
  set +e
  "$SLOKIT" gate "$FN" --baseline "$WORK/base" --against "$OLD" "$@" $EXTRA \
    --format json --out "$out" 2>"$WORK/$kind$i.err"
  rc=$?
  set -e
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  times+=("$secs")
  if [[ ! -s "$out" ]]; then
    echo "$(date -u +%H:%M:%S) load $(load) $kind $i: exit $rc, no report: $(tail -1 "$WORK/$kind$i.err")"
    RC=$rc
    return
  fi
  local change
  change=$(json "$out" change | awk '{ printf "%+.1f %%", $1 * 100 }')
  echo "$(date -u +%H:%M:%S) load $(load) $kind $i: exit $rc, change $change $(ci "$out"), $(json "$out" pairs) pairs, mode $(json "$out" mode)/$(json "$out" runner), ${secs} s"
  RC=$rc
}

echo "== $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
  run slower "$i" --param "$SLOW_PARAM"
  [[ $RC -eq 1 ]] && flag_slow=$((flag_slow + 1))
  run unchanged "$i"
  [[ $RC -eq 1 ]] && flag_same=$((flag_same + 1))
done

stats=$(printf '%s\n' "${times[@]}" | sort -g | awk '
  { v[NR] = $1; s += $1 } END { printf "mean %.1f s, max %.1f s", s / NR, v[NR]; exit (v[NR] <= 30 ? 0 : 1) }') && ok3=PASS || ok3=FAIL
[[ $flag_slow -ge $(( (RUNS * 9 + 9) / 10 )) ]] && ok1=PASS || ok1=FAIL
[[ $flag_same -le $(( RUNS / 10 )) ]] && ok2=PASS || ok2=FAIL

echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "(1) 10 % slower $FN flagged $flag_slow/$RUNS (goal ≥ 9/10) → $ok1"
echo "(2) unchanged $FN flagged $flag_same/$RUNS (goal ≤ 1/10) → $ok2"
echo "(3) one gate run: $stats (goal ≤ 30 s) → $ok3"
[[ $ok1 == PASS && $ok2 == PASS && $ok3 == PASS ]]
