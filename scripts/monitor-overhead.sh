#!/usr/bin/env bash
# Monitor cost: throughput of a closed-loop loopback request loop against
# `slokit serve` without and with the scheduling agent's eBPF monitor
# attached (`slokit sched --policy cfs`: monitor only, no policy changes).
# Rounds alternate off/on (ABBA order) so machine noise hits both; the
# medians and the loss are printed. Goal: loss <= 2 %.
#
# Beside the throughput A/B (noisy on a shared VM: rounds differ by ±20 %)
# it measures CPU per request, which the host's steal does not blur:
#  - the machine's busy CPU time per request (/proc/stat: user, nice,
#    system, irq, softirq; not idle, not steal) in each half; the paired
#    difference on − off is everything the monitor adds per request, and
#    (on − off) / on the throughput a CPU-bound loop loses to it;
#  - the monitor's own share of that: the BPF programs' run time
#    (kernel.bpf_stats_enabled, switched on for the run and restored on
#    exit; the statistics add two clock reads per program run) plus the
#    agent process's CPU time during the half (its start-up not counted).
#
# Usage: scripts/monitor-overhead.sh [ROUNDS=5] [SECS=10] [CONNS=4] [MS=0]
# Needs root (BPF). Run from the repository root. Everything it starts is
# killed by pid on exit.
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)

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
PREV_BPF_STATS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  sysctl -qw kernel.bpf_stats_enabled="$PREV_BPF_STATS" || true
  [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  [ -n "$HOST_PID" ] && kill -TERM "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source=scripts/lib/host-and-agent.sh
. "$SCRIPTS/lib/host-and-agent.sh"
start_host "$CONNS" "$FN_CPU"
echo "host pid $HOST_PID at $ADDR; workers on CPU $FN_CPU; client on CPU 0; $ROUNDS rounds x $SECS s, $CONNS connections, spin ms=$MS"

run_load() { taskset -c 0 "$LOAD" "$ADDR" --conns "$CONNS" --secs "$SECS" --mix "$MS:1"; }
rps() { sed -n 's/.*"rps":\([0-9.]*\).*/\1/p'; }
requests() { sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
agent_ticks() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
bpf_ns() { bpftool prog show -j | python3 -c 'import json,sys; print(sum(p.get("run_time_ns",0) for p in json.load(sys.stdin) if p.get("name","").startswith("slokit_")))'; }
# busy µs per request over a half: TICKS_BEFORE TICKS_AFTER REQUESTS
us_per_req() { awk -v a="$1" -v b="$2" -v q="$3" -v t="$CLK_TCK" 'BEGIN {printf "%.3f", (b - a) * 1e6 / t / (q > 0 ? q : 1)}'; }

taskset -c 0 "$LOAD" "$ADDR" --conns "$CONNS" --secs 2 --mix "$MS:1" >/dev/null # warm-up
OFF=()
ON=()
SHARES=()
CPU_LOSSES=()
# One half without the agent: sets off, off_us.
half_off() {
  local b0 b1 out
  b0=$(busy_ticks)
  out=$(run_load)
  b1=$(busy_ticks)
  off=$(echo "$out" | rps)
  off_us=$(us_per_req "$b0" "$b1" "$(echo "$out" | requests)")
}
# One half with the agent attached (started before, stopped after, neither
# inside the half): sets on, on_us, agent_ns, bpf, on_reqs, seen, drops.
half_on() {
  local a0 a1 p0 p1 b0 b1 out
  start_agent "$TMP/agent-$r.out" --policy cfs --pid "$HOST_PID" --summary-every 0 \
    --metrics-out "$TMP/agent-$r.json"
  a0=$(agent_ticks)
  p0=$(bpf_ns)
  b0=$(busy_ticks)
  out=$(run_load)
  b1=$(busy_ticks)
  a1=$(agent_ticks)
  p1=$(bpf_ns)
  on=$(echo "$out" | rps)
  on_reqs=$(echo "$out" | requests)
  on_us=$(us_per_req "$b0" "$b1" "$on_reqs")
  kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true; AGENT_PID=""
  seen=$(sed -n 's/.*"requests_seen": \([0-9]*\).*/\1/p' "$TMP/agent-$r.json")
  drops=$(sed -n 's/.*"event_drops": \([0-9]*\).*/\1/p' "$TMP/agent-$r.json")
  agent_ns=$(awk -v a="$a0" -v b="$a1" -v t="$CLK_TCK" 'BEGIN {printf "%.0f", (b - a) * 1e9 / t}')
  bpf=$((p1 - p0))
}
for r in $(seq "$ROUNDS"); do
  # ABBA: odd rounds off then on, even rounds on then off, so neither
  # order (nor a drift within a round) favours one side.
  if [ $((r % 2)) -eq 1 ]; then half_off; half_on; else half_on; half_off; fi
  share=$(awk -v b="$bpf" -v a="$agent_ns" -v s="$SECS" -v n="$NCPU" 'BEGIN {printf "%.3f", (a + b) / (s * 1e9 * n) * 100}')
  own_us=$(awk -v b="$bpf" -v a="$agent_ns" -v q="$on_reqs" 'BEGIN {printf "%.3f", (a + b) / (q > 0 ? q : 1) / 1e3}')
  cpu_loss=$(awk -v off="$off_us" -v on="$on_us" 'BEGIN {printf "%.2f", (on - off) / on * 100}')
  echo "round $r: off $off req/s, $off_us µs CPU/request; on $on req/s, $on_us µs CPU/request (+$cpu_loss %); agent saw $seen requests, $drops drops; monitor's own CPU: BPF $((bpf / 1000000)) ms + agent $((agent_ns / 1000000)) ms = $own_us µs per request, $share % of $NCPU CPUs × ${SECS} s"
  SHARES+=("$share")
  CPU_LOSSES+=("$cpu_loss")
  OFF+=("$off")
  ON+=("$on")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# median and quartiles of a list, labelled
summary() {
  local label=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v l="$label" '{a[NR]=$1} END {
    n = NR
    med = (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)
    printf "%s: median %.2f %%, quartiles %.2f … %.2f %% (%d rounds)\n", l, med, a[int((n+3)/4)], a[int((3*n+1)/4)+0], n
  }'
}
moff=$(median "${OFF[@]}")
mon=$(median "${ON[@]}")
awk -v off="$moff" -v on="$mon" 'BEGIN {printf "median off %.1f req/s, on %.1f req/s, loss %.2f %%\n", off, on, (off-on)/off*100}'
# Paired: each round's loss against its own "off" half, so slow drift of the
# machine between rounds cancels.
LOSSES=()
for i in "${!OFF[@]}"; do
  LOSSES+=("$(awk -v off="${OFF[$i]}" -v on="${ON[$i]}" 'BEGIN {print (off-on)/off*100}')")
done
summary "paired throughput loss per round" "${LOSSES[@]}"
summary "paired CPU-per-request loss (steal excluded)" "${CPU_LOSSES[@]}"
echo "monitor's own CPU: median $(median "${SHARES[@]}") % of the machine (BPF programs + agent process)"
