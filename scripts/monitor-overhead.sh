#!/usr/bin/env bash
# Monitor cost: throughput of a closed-loop loopback request loop against
# `slokit serve` without and with the scheduling agent's eBPF monitor
# attached (`slokit sched --policy cfs`: monitor only, no policy changes).
# Rounds alternate off/on so machine noise hits both; the medians and the
# loss are printed. Goal: loss <= 2 %.
#
# Usage: scripts/monitor-overhead.sh [ROUNDS=5] [SECS=10] [CONNS=4] [MS=0]
# Needs root (BPF). Run from the repository root. Everything it starts is
# killed by pid on exit.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-4}
MS=${4:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin slokit
cargo build --release --quiet -p slokit-sched --example loopback_load
BIN=$CARGO_TARGET_DIR/release/slokit
LOAD=$CARGO_TARGET_DIR/release/examples/loopback_load
NCPU=$(nproc)
FN_CPU=$((NCPU - 1))
TMP=$(mktemp -d)
HOST_PID=""
AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  [ -n "$HOST_PID" ] && kill -TERM "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN" serve --functions spin --listen 127.0.0.1:0 --cpus "$FN_CPU" --workers "$CONNS" >"$TMP/host.out" 2>"$TMP/host.err" &
HOST_PID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$TMP/host.out" 2>/dev/null && break
  sleep 0.1
done
ADDR=$(sed -n 's#.*listening on http://##p' "$TMP/host.out" | head -1)
[ -n "$ADDR" ] || { echo "host did not start: $(cat "$TMP/host.err")" >&2; exit 1; }
echo "host pid $HOST_PID at $ADDR; workers on CPU $FN_CPU; client on CPU 0; $ROUNDS rounds x $SECS s, $CONNS connections, spin ms=$MS"

run_load() { taskset -c 0 "$LOAD" "$ADDR" --conns "$CONNS" --secs "$SECS" --mix "$MS:1"; }
rps() { sed -n 's/.*"rps":\([0-9.]*\).*/\1/p'; }

taskset -c 0 "$LOAD" "$ADDR" --conns "$CONNS" --secs 2 --mix "$MS:1" >/dev/null # warm-up
OFF=()
ON=()
for r in $(seq "$ROUNDS"); do
  off=$(run_load | rps)
  "$BIN" sched --policy cfs --pid "$HOST_PID" --summary-every 0 \
    --metrics-out "$TMP/agent-$r.json" >"$TMP/agent.out" 2>"$TMP/agent.err" &
  AGENT_PID=$!
  for _ in $(seq 300); do
    grep -q "agent ready" "$TMP/agent.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "agent ready" "$TMP/agent.out" || { echo "agent did not start: $(cat "$TMP/agent.err")" >&2; exit 1; }
  on=$(run_load | rps)
  kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true; AGENT_PID=""
  seen=$(sed -n 's/.*"requests_seen": \([0-9]*\).*/\1/p' "$TMP/agent-$r.json")
  drops=$(sed -n 's/.*"event_drops": \([0-9]*\).*/\1/p' "$TMP/agent-$r.json")
  echo "round $r: off $off req/s, on $on req/s (agent saw $seen requests, $drops drops)"
  OFF+=("$off")
  ON+=("$on")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
moff=$(median "${OFF[@]}")
mon=$(median "${ON[@]}")
awk -v off="$moff" -v on="$mon" 'BEGIN {printf "median off %.1f req/s, on %.1f req/s, loss %.2f %%\n", off, on, (off-on)/off*100}'
