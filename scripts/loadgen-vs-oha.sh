#!/usr/bin/env bash
# Acceptance figures of `slokit loadgen` against oha on a trivial loopback
# server (docs/loadgen.md records the results and the machine they ran on).
#
#   scripts/loadgen-vs-oha.sh            # all four checks
#   CHECKS="1 3" scripts/loadgen-vs-oha.sh
#
# Env: OHA=/path/to/oha (else PATH, else `cargo install oha --locked` into
# $OHA_ROOT, default /tmp/oha-root — that compile takes several minutes),
# PORT (18099), RATE (10000), MODERATE (2000), CONCURRENCY (64),
# SECONDS_RUN (10), MEM_SECONDS (60), NICE (-20: both processes get
# priority over other work on a shared machine; 0 to disable).
# Everything runs on loopback, bounded in time; the server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18099}
RATE=${RATE:-10000}
MODERATE=${MODERATE:-2000}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_RUN=${SECONDS_RUN:-10}
MEM_SECONDS=${MEM_SECONDS:-60}
NICE=${NICE:--20}
CHECKS=${CHECKS:-1 2 3 4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$(mktemp -d /tmp/loadgen-vs-oha.XXXXXX)

cargo build --release --bin slokit -p slokit -p slokit-loadgen --example trivial_server >&2
SLOKIT=$CARGO_TARGET_DIR/release/slokit
SERVER=$CARGO_TARGET_DIR/release/examples/trivial_server

NEED_OHA=0
[[ " $CHECKS " == *" 2 "* || " $CHECKS " == *" 3 "* ]] && NEED_OHA=1
if [[ $NEED_OHA == 1 && -z "${OHA:-}" ]]; then
  if command -v oha >/dev/null; then
    OHA=$(command -v oha)
  else
    OHA_ROOT=${OHA_ROOT:-/tmp/oha-root}
    if [[ ! -x $OHA_ROOT/bin/oha ]]; then
      echo "installing oha into $OHA_ROOT (cargo install oha --locked; takes a while)" >&2
      CARGO_TARGET_DIR=$OHA_ROOT/target cargo install oha --locked --root "$OHA_ROOT" >&2
    fi
    OHA=$OHA_ROOT/bin/oha
  fi
fi

run() { nice -n "$NICE" "$@"; }

nice -n "$NICE" "$SERVER" "$PORT" 1 2>"$OUT/server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  sleep 0.1
done
URL=http://127.0.0.1:$PORT

field() { # field FILE PYTHON-EXPRESSION-ON-r
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}

echo "# slokit loadgen vs oha — $(date -u +%FT%TZ)"
echo "machine: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
[[ $NEED_OHA == 1 ]] && echo "oha: $($OHA --version)"
echo

if [[ " $CHECKS " == *" 1 "* ]]; then
  cmd=("$SLOKIT" loadgen --rate "$RATE" --process constant --duration "${SECONDS_RUN}s" --connections 16 --target "$URL" --out "$OUT/accuracy.json" -q)
  run "${cmd[@]}" >"$OUT/accuracy.txt" 2>&1 || true
  echo "## (1) send accuracy at $RATE/s constant for ${SECONDS_RUN} s"
  echo "command: nice -n $NICE ${cmd[*]}"
  field "$OUT/accuracy.json" '"target %.1f/s, achieved %.1f/s (%+.3f %%); lateness p50 %.1f µs, p99 %.1f µs, max %.1f µs; ok %d of %d" % (r["send"]["target_rate_per_s"], r["send"]["achieved_rate_per_s"], (r["send"]["achieved_rate_per_s"]/r["send"]["target_rate_per_s"]-1)*100, r["send"]["lateness_us"]["p50"], r["send"]["lateness_us"]["p99"], r["send"]["lateness_us"]["max"], r["functions"][0]["ok"], r["functions"][0]["invocations"])'
  echo
fi

if [[ " $CHECKS " == *" 2 "* ]]; then
  echo "## (2) maximum throughput, $CONCURRENCY connections, ${SECONDS_RUN} s each"
  ocmd=("$OHA" -z "${SECONDS_RUN}s" -c "$CONCURRENCY" --no-tui --output-format json "$URL/invoke/spin")
  run "${ocmd[@]}" >"$OUT/oha-max.json" 2>"$OUT/oha-max.err" || true
  oha_rps=$(field "$OUT/oha-max.json" 'round(r["summary"]["requestsPerSec"], 1)')
  # Open loop with an unreachable target rate; the in-flight cap (delay)
  # turns it into a closed loop over $CONCURRENCY connections like oha's.
  scmd=("$SLOKIT" loadgen --rate 100000 --process constant --duration "${SECONDS_RUN}s" --max-inflight "$CONCURRENCY" --connections "$CONCURRENCY" --target "$URL" --out "$OUT/slokit-max.json" -q)
  run "${scmd[@]}" >"$OUT/slokit-max.txt" 2>&1 || true
  slokit_rps=$(field "$OUT/slokit-max.json" 'round(sum(f["ok"] for f in r["functions"]) / r["duration_s"], 1)')
  echo "oha:    $oha_rps req/s   (nice -n $NICE ${ocmd[*]})"
  echo "slokit: $slokit_rps req/s   (nice -n $NICE ${scmd[*]}; ok replies / run duration)"
  python3 -c "print('ratio slokit/oha: %.2f' % ($slokit_rps / $oha_rps))"
  echo
fi

if [[ " $CHECKS " == *" 3 "* ]]; then
  echo "## (3) latency at $MODERATE/s for ${SECONDS_RUN} s (oha latency-corrected)"
  ocmd=("$OHA" -z "${SECONDS_RUN}s" -q "$MODERATE" --latency-correction -c 16 --no-tui --output-format json "$URL/invoke/spin")
  run "${ocmd[@]}" >"$OUT/oha-mod.json" 2>"$OUT/oha-mod.err" || true
  scmd=("$SLOKIT" loadgen --rate "$MODERATE" --process constant --duration "${SECONDS_RUN}s" --connections 16 --target "$URL" --out "$OUT/slokit-mod.json" -q)
  run "${scmd[@]}" >"$OUT/slokit-mod.txt" 2>&1 || true
  o50=$(field "$OUT/oha-mod.json" 'r["latencyPercentiles"]["p50"]*1e6')
  o99=$(field "$OUT/oha-mod.json" 'r["latencyPercentiles"]["p99"]*1e6')
  s50=$(field "$OUT/slokit-mod.json" 'r["functions"][0]["response_us"]["p50"]')
  s99=$(field "$OUT/slokit-mod.json" 'r["functions"][0]["response_us"]["p99"]')
  echo "oha:    p50 $o50 µs, p99 $o99 µs   (nice -n $NICE ${ocmd[*]})"
  echo "slokit: p50 $s50 µs, p99 $s99 µs   (nice -n $NICE ${scmd[*]})"
  python3 -c "print('slokit/oha: p50 %.2f, p99 %.2f' % ($s50/$o50, $s99/$o99))"
  echo
fi

if [[ " $CHECKS " == *" 4 "* ]]; then
  echo "## (4) memory: $MEM_SECONDS s at 5000/s"
  scmd=("$SLOKIT" loadgen --rate 5000 --process poisson --duration "${MEM_SECONDS}s" --connections 16 --target "$URL" --out "$OUT/mem.json" -q)
  run /usr/bin/time -f "%M" -o "$OUT/mem.rss" "${scmd[@]}" >"$OUT/mem.txt" 2>&1 || true
  echo "peak RSS $(cat "$OUT/mem.rss") KiB over $(field "$OUT/mem.json" 'sum(f["invocations"] for f in r["functions"])') invocations   (nice -n $NICE /usr/bin/time -f %M ${scmd[*]})"
  echo
fi
echo "raw outputs: $OUT"
