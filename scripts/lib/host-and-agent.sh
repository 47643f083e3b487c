# Shared by the scheduler scripts (sourced, not run): start a `slokit serve`
# host and a `slokit sched` agent as children and wait until each is ready.
# Callers set BIN (the slokit binary) and TMP (a scratch directory), and end
# HOST_PID / AGENT_PID by pid in their EXIT trap.

# start_host WORKERS CPU: spin host with WORKERS workers on CPU; sets
# HOST_PID and ADDR (host:port), or exits with the host's error.
start_host() {
  "$BIN" serve --functions spin --listen 127.0.0.1:0 --cpus "$2" --workers "$1" >"$TMP/host.out" 2>"$TMP/host.err" &
  HOST_PID=$!
  wait_for_line "$TMP/host.out" "listening on" 100 || true
  ADDR=$(sed -n 's#.*listening on http://##p' "$TMP/host.out" | head -1)
  [ -n "$ADDR" ] || { echo "host did not start: $(cat "$TMP/host.err")" >&2; exit 1; }
}

# start_agent OUT ARGS...: `slokit sched ARGS...` with stdout in OUT; sets
# AGENT_PID once it printed `agent ready`, or exits with its error.
start_agent() {
  local out=$1
  shift
  "$BIN" sched "$@" >"$out" 2>"$out.err" &
  AGENT_PID=$!
  wait_for_line "$out" "agent ready" 300 || true
  grep -q "agent ready" "$out" || { echo "agent did not start: $(cat "$out.err")" >&2; exit 1; }
}

# wait_for_line FILE PATTERN TRIES: polls every 0.1 s.
wait_for_line() {
  for _ in $(seq "$3"); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
