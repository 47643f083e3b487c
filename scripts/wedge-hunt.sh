#!/usr/bin/env bash
# A bounded attempt to reproduce the wedged real-time class of issue 14
# (docs/scheduler.md, "A wedged CPU"): for SECS seconds (default 360), rounds
# of `slokit sched` under las, two-level and fifo on a `slokit serve` spin
# host on CPU 1 with load, each agent ended by SIGKILL mid-load, then an aes
# profile; after each step a SCHED_FIFO canary on CPU 1 (`chrt -f 1 taskset
# -c 1 true`, whole command within 500 ms) and CPU 1's kernel ticks over
# 200 ms while idle. Prints one line per step and `WEDGE` where the canary
# failed. Only the pids it started are signalled. Run it on a machine you
# can afford to lose to a wedge, with nothing else measuring.
#
# Usage: [SECS=360] [BIN=target/release/slokit] scripts/wedge-hunt.sh
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/slokit}
TMP=$(mktemp -d)
source scripts/lib/host-and-agent.sh
AGENT_PID= HOST_PID= LG=
cleanup() {
  [ -n "$AGENT_PID" ] && kill -9 "$AGENT_PID" 2>/dev/null
  [ -n "$LG" ] && kill "$LG" 2>/dev/null
  [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
canary() {
  local t0 t1 rc a b sys tot i
  t0=$(date +%s%N)
  timeout 2 chrt -f 1 taskset -c 1 true
  rc=$?
  t1=$(date +%s%N)
  a=($(sed -n 's/^cpu1 //p' /proc/stat)); sleep 0.2; b=($(sed -n 's/^cpu1 //p' /proc/stat))
  sys=$(( (b[2]-a[2]) + (b[5]-a[5]) + (b[6]-a[6]) )); tot=0
  for i in 0 1 2 3 4 5 6 7; do tot=$((tot + b[i] - a[i])); done
  echo "canary rc=$rc $(( (t1 - t0) / 1000000 )) ms, cpu1 kernel ${sys}/${tot} ticks"
  [ "$rc" -eq 0 ] && [ $(( (t1 - t0) / 1000000 )) -lt 500 ]
}
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
end=$(( $(date +%s) + ${SECS:-360} ))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round + 1))
  for policy in las two-level fifo; do
    start_host 4 1
    start_agent "$TMP/agent.out" --policy "$policy" --pid "$HOST_PID"
    "$BIN" loadgen --target "http://$ADDR" --function spin --rate 200 --duration 3 --params '{"ms":3}' >"$TMP/lg.out" 2>&1 &
    LG=$!
    sleep "1.$((RANDOM % 9))"
    kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
    wait "$LG"; rc=$?; LG=
    kill "$HOST_PID"; wait "$HOST_PID" 2>/dev/null; HOST_PID=
    echo "round $round $policy (agent SIGKILLed mid-load, loadgen exit $rc): $(canary || echo WEDGE)"
  done
  "$BIN" profile aes --max-time 4 --out-dir "$TMP/p" >/dev/null 2>&1
  echo "round $round aes profile exit $?: $(canary || echo WEDGE)"
done
