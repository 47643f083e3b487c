#!/usr/bin/env bash
# Decision latencies of the two-level agent on real traffic: arrival event →
# SCHED_FIFO set, and credit exhausted → SCHED_OTHER set (goals: p99 ≤ 100 µs
# and ≤ 200 µs). `slokit serve` (spin, 4 workers on the last CPU), `slokit
# sched --policy two-level` (agent on CPU 0), an open-loop client on CPU 0
# sending spin 2 ms (80 %) / 40 ms (20 %) at RATE/s for SECS s. Prints the
# agent's summary line and the two latency summaries from its metrics.
#
# Usage: scripts/decision-latency.sh   (env: RATE=40 SECS=30 AGENT_ARGS=…)
# Needs root (BPF, SCHED_FIFO). Everything it starts is ended by pid on exit.
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$0")/.."
RATE=${RATE:-40}
SECS=${SECS:-30}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin slokit
cargo build --release --quiet -p slokit-sched --example loopback_load
BIN=$CARGO_TARGET_DIR/release/slokit
LOAD=$CARGO_TARGET_DIR/release/examples/loopback_load
FN_CPU=$(($(nproc) - 1))
TMP=$(mktemp -d)
HOST_PID=""
AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  [ -n "$HOST_PID" ] && kill -TERM "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# shellcheck source=scripts/lib/host-and-agent.sh
. "$SCRIPTS/lib/host-and-agent.sh"
start_host 4 "$FN_CPU"
# shellcheck disable=SC2086
start_agent "$TMP/agent.out" --policy two-level --pid "$HOST_PID" --deadline "$HOST_PID=100" \
  --metrics-out "$TMP/agent.json" --summary-every 0 ${AGENT_ARGS:-}
echo "$(date -u +%FT%TZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); host $HOST_PID at $ADDR (CPU $FN_CPU), rate $RATE/s for $SECS s"
taskset -c 0 "$LOAD" "$ADDR" --conns 4 --secs "$SECS" --rate "$RATE" --mix 2:0.8,40:0.2
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || true
AGENT_PID=""
tail -1 "$TMP/agent.out.err"
python3 - "$TMP/agent.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for key in ("arrival_to_fifo_us", "arrival_to_agent_us", "exhausted_to_demoted_us"):
    s = m[key]["summary"]
    print(f"{key}: n={s['count']} p50 {s['p50']:.0f} µs, p90 {s['p90']:.0f} µs, p99 {s['p99']:.0f} µs, max {s['max']:.0f} µs")
print(f"requests_seen={m['requests_seen']} event_drops={m['event_drops']}")
PY
