#!/usr/bin/env bash
# Reproduces the shipped demo model, models/eknet-demo.eknet, from the shared public records:
# prepare (LUDB + CinC, 6 classes, stratified record-level split, seed 42), stage 1 on every
# usable record, stage 2 on the training split, evaluation on the test split, export (f32 + int8,
# int8 calibrated on training records), and the list of held-out (test) records the demo streams.
#
#   tools/reproduce-demo-model.sh            # writes models/eknet-demo.eknet and its side files
#   OUT=/tmp/demo tools/reproduce-demo-model.sh   # writes elsewhere (the models/ copy is untouched)
#
# Needs the shared records in ../shared/data (or EKNET_DATA_DIR). Runs from the repository root;
# takes about 25 minutes on a 2-core machine (see models/MODEL_CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${EKNET_DATA_DIR:-../shared/data}"
OUT="${OUT:-models}"
CLASSES="SBRAD,STACH,AFIB,LVH,LAO/LAE,IRBBB"
[ -d "$DATA/ludb/data" ] && [ -d "$DATA/cinc/records" ] || {
    echo "reproduce-demo-model: no shared records at $DATA (set EKNET_DATA_DIR)" >&2
    exit 1
}
start=$(date +%s)
cargo build --release --locked -p eknet-trainer
T=target/release/eknet-train
rm -rf data/demo model_outputs/eknet_demo_stage1 model_outputs/eknet_demo_stage2
"$T" prepare --format wfdb --input "$DATA/ludb/data" --input "$DATA/cinc/records" \
    --out data/demo --classes "$CLASSES" --stratify --seed 42 --tables "$DATA"
# Stage 1 reads every usable record (signals only): train + val + test.
{ head -n 1 data/demo/k0_train.csv; tail -q -n +2 data/demo/k0_train.csv data/demo/k0_val.csv data/demo/k0_test.csv; } \
    > data/demo/k0_all.csv
"$T" pretrain --config configs/demo/EKnet_self_learning_demo.yaml --quiet
"$T" finetune --config configs/demo/EKnet_classification_demo.yaml --quiet
best=model_outputs/eknet_demo_stage2/best
"$T" evaluate --checkpoint "$best" --split val --bootstrap 1000
"$T" evaluate --checkpoint "$best" --split test --bootstrap 1000
mkdir -p "$OUT"
"$T" export --checkpoint "$best" --calibration data/demo/k0_train.csv --calibration-windows 64 \
    --reproduce tools/reproduce-demo-model.sh --tables "$DATA" --out "$OUT/eknet-demo.eknet"
"$T" verify "$OUT/eknet-demo.eknet"
# Held-out records for `eknetd --demo`: the test split, as paths under the shared data folder.
tail -n +2 data/demo/k0_test.csv | cut -d, -f1 \
    | sed -e 's#^records/data/#ludb/data/#' -e 's#^records/records/#cinc/records/#' \
    > "$OUT/eknet-demo.heldout.txt"
cp "$best/eval_test/metrics.json" "$OUT/eknet-demo.test-metrics.json"
cp "$best/eval_val/metrics.json" "$OUT/eknet-demo.val-metrics.json"
echo "reproduce-demo-model: done in $(( $(date +%s) - start )) s; bundle $(stat -c %s "$OUT/eknet-demo.eknet") bytes"
