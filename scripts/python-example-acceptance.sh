#!/usr/bin/env bash
# Acceptance of the external-runtime example (issue 16): runs
# `slokit compare --experiment examples/python/experiment.toml` (the seed's
# auth and aes in Python behind gunicorn, beside the built-in video) and
# checks that the report lists every policy for the Python functions and
# that its environment box names the host commands and the runtime's
# version. Then it runs the Python functions alone (the example without
# video, 4 s per policy) and checks that in every run the agent saw every
# request sent to the Python runtime (requests_seen of agent-*.json =
# invocations of run-*.json; the agent counts all its targets together, so
# the built-in host is left out of this run). Prints the terminal report and
# one line per run.
#
# Usage: scripts/python-example-acceptance.sh [extra `slokit compare` flags]
# Needs root (the agent) and `cargo xtask setup` (examples/python/.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo xtask setup
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin slokit
OUT=$(mktemp -d /tmp/slokit-python-example.XXXXXX)
BIN=$CARGO_TARGET_DIR/release/slokit
"$BIN" compare --experiment examples/python/experiment.toml --out "$OUT/example" "$@"
# The same experiment without its built-in function, beside the original
# (host paths are relative to the experiment file).
ALONE=examples/python/.python-only.toml
trap 'rm -f "$ALONE"' EXIT
python3 - examples/python/experiment.toml "$ALONE" <<'PY'
import sys
text = open(sys.argv[1]).read()
video = '[[scenarios.functions]]\nlabel = "video"\nfunction = "video"\nweight = 0.1\n'
assert video in text, "the example's video entry"
open(sys.argv[2], "w").write(text.replace(video, ""))
PY
"$BIN" compare --experiment "$ALONE" --duration 4 --out "$OUT/alone" "$@" >/dev/null
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
report = json.load(open(os.path.join(out, "example", "report.json")))
fails = []
every = {"cfs", "fifo", "two-level", "las"}
python = [f for s in report["scenarios"] for f in s["functions"] if f["label"].startswith("py-")]
if {f["label"] for f in python} != {"py-auth", "py-aes"}:
    fails.append(f"Python functions in the report: {[f['label'] for f in python]}")
for f in python:
    measured = {m["policy"] for m in f["measured"]}
    if measured != every:
        fails.append(f"{f['label']}: measured policies {sorted(measured)}")
hosts = report["environment"].get("function_hosts", [])
for h in hosts:
    print(f"host {h['label']}: {h['command']} ({h.get('runtime')})")
if {h["label"] for h in hosts} != {"py-auth", "py-aes"}:
    fails.append(f"function hosts in the environment box: {hosts}")
alone = os.path.join(out, "alone")
tags = 0
for path in sorted(glob.glob(os.path.join(alone, "agent-*.json"))):
    tag = os.path.basename(path)[len("agent-"):-len(".json")]
    agent = json.load(open(path))
    run = json.load(open(os.path.join(alone, f"run-{tag}.json")))
    tags += 1
    sent = sum(f["invocations"] for f in run["functions"])
    print(f"{tag}: sent {sent}, agent saw {agent['requests_seen']}, completed {agent['requests_completed']}")
    if agent["requests_seen"] != sent:
        fails.append(f"{tag}: agent saw {agent['requests_seen']} of {sent}")
if tags != 4:
    fails.append(f"{tags} runs of the Python functions alone, not 4")
if fails:
    print("FAIL:\n  " + "\n  ".join(fails))
    sys.exit(1)
print(f"OK: every policy ran, every request was seen; report in {out}/example/report.html")
PY
