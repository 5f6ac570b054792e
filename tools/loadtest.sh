#!/usr/bin/env bash
# Load test of eknetd (issue: hardening): starts `eknetd --demo` (the simulator streams real
# held-out records over a pseudo-terminal in real time), then drives it for 60 s with
# tools/loadtest: 1,000 requests/s over /v1/status, /v1/results/latest and /v1/results?since=,
# 50 event-stream clients, 5 uploads/s of a real LUDB record. Prints per-route p50/p99/max,
# errors, windows missed by the pipeline, and the daemon's RSS and open file descriptors before
# and after. Not a unit test: run it on an otherwise idle machine and name the CPU with the figures.
#
#   tools/loadtest.sh                 # the defaults above
#   SECONDS_=20 RATE=500 tools/loadtest.sh
#
# Needs the shared records (../shared/data or EKNET_DATA_DIR) and models/eknet-demo.eknet.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${EKNET_DATA_DIR:-../shared/data}"
PORT="${PORT:-18780}"
cargo build --release --locked -p eknet-daemon -p eknet-loadtest
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/eknetd --demo --bundle models/eknet-demo.eknet --listen "127.0.0.1:$PORT" \
    --history "$work/history.jsonl" > "$work/eknetd.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break
    sleep 0.1
done
# Let the first windows through, then warm the daemon up with 20 s of the same load (thread
# pools, allocator arenas, connection buffers), so "before" and "after" compare steady states.
sleep 12
target/release/eknet-loadtest --addr "127.0.0.1:$PORT" --seconds 20 --rate "${RATE:-1000}" \
    --sse "${SSE:-50}" --uploads "${UPLOADS:-5}" --upload-record "$DATA/ludb/data/1" --json > /dev/null
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
target/release/eknet-loadtest --addr "127.0.0.1:$PORT" --pid "$pid" \
    --seconds "${SECONDS_:-60}" --rate "${RATE:-1000}" --sse "${SSE:-50}" \
    --uploads "${UPLOADS:-5}" --upload-record "$DATA/ludb/data/1" "$@"
kill -TERM "$pid"
wait "$pid" && echo "eknetd stopped cleanly (exit 0)"
