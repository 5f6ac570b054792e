#!/usr/bin/env bash
# Accelerated soak of eknetd (issue: hardening): eknet-sim streams LUDB's 200 real records over a
# pseudo-terminal at 20 x real time with faults at random (a burst of dropped frames, a corrupted
# frame, garbage bytes, an electrode off, a stall, a hang-up: one every 20 stream seconds on
# average) and logs every sample it lost and why; eknetd reads the link with the shipped demo
# bundle. After 2 hours of device time (6 minutes) tools/loadtest's eknet-soak checks the daemon's
# status and whole history against that log: every window classified, abstained with a reason or
# counted dropped; no window holding a lost sample; every lead-off named; every window the intact
# runs allow made; history ids contiguous; RSS and descriptors flat. Exit 0 only if all hold.
#
#   tools/soak.sh                          # 2 h of device time at 20 x, seed 1
#   HOURS=0.25 SEED=7 tools/soak.sh --json # any eknet-soak option may follow
#
# Needs the shared records (../shared/data or EKNET_DATA_DIR) and models/eknet-demo.eknet. Not a
# unit test: run it on an otherwise idle machine and name the CPU with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${EKNET_DATA_DIR:-../shared/data}"
cargo build --release --locked -p eknet-daemon -p eknet-loadtest
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores" >&2
exec target/release/eknet-soak --hours "${HOURS:-2}" --speed "${SPEED:-20}" \
    --fault-every "${FAULT_EVERY:-20}" --seed "${SEED:-1}" \
    --records "$DATA/ludb/data" --bundle models/eknet-demo.eknet "$@"
