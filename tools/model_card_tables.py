#!/usr/bin/env python3
"""Prints the model card's tables (markdown) from a bundle's manifest and `eknet-train evaluate`
outputs, so the card's numbers are the bundle's own.

  python3 tools/model_card_tables.py models/eknet-demo.eknet \
      --test models/eknet-demo.test-metrics.json --val models/eknet-demo.val-metrics.json \
      --baseline models/eknet-demo.baseline-cnn-test-metrics.json
"""
import argparse
import json
import zipfile


def f(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--test", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--baseline", help="`eknet-train baseline` metrics.json on the same split")
    a = p.parse_args()
    with zipfile.ZipFile(a.bundle) as z:
        m = json.loads(z.read("manifest.json"))
        sizes = {i.filename: (i.file_size, i.compress_size) for i in z.infolist()}
    test = json.load(open(a.test))
    val = json.load(open(a.val))
    test_by = {c["name"]: c for c in test["classes"]}
    val_by = {c["name"]: c for c in val["classes"]}

    print("### Classes and support (records)\n")
    print("| class | statement | SNOMED CT | train | val | test | threshold f32 | threshold int8 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for l in m["labels"]:
        sn = ", ".join(l.get("snomed") or []) or "-"
        print(f"| {l['code']} | {l.get('description') or '-'} | {sn} | {l['support_train']} | "
              f"{l['support_val']} | {test_by[l['code']]['support']} | {l['threshold_f32']:.3f} | "
              f"{l['threshold_int8']:.3f} |")

    mt = m["metrics"]
    print(f"\n### Validation split ({mt['records']} records): f32 and int8 graphs (tract), "
          "thresholds fitted here\n")
    print("| class | AUC f32 | AUC int8 | F1 f32 | F1 int8 | sensitivity f32 | sensitivity int8 | PPV f32 | PPV int8 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a32, a8 in zip(mt["f32"]["per_class"], mt["int8"]["per_class"]):
        print(f"| {a32['code']} | {f(a32['auc'])} | {f(a8['auc'])} | {f(a32['f1'])} | {f(a8['f1'])} | "
              f"{f(a32['sensitivity'])} | {f(a8['sensitivity'])} | {f(a32['ppv'])} | {f(a8['ppv'])} |")
    print(f"| **macro** | **{f(mt['f32']['macro_auc'])}** | **{f(mt['int8']['macro_auc'])}** | | | | | | |")
    print(f"\nint8 vs f32 on validation: max |score difference| {mt['int8_vs_f32_max_abs']:.4f}, "
          f"mean {mt['int8_vs_f32_mean_abs']:.4f}; macro AUC difference "
          f"{f(mt['int8_vs_f32_macro_auc'], 4)}; worst class AUC difference {f(mt['int8_vs_f32_worst_class_auc'], 4)}. "
          f"f32 graph vs the trainer (burn): max |difference| {mt['f32_vs_trainer_max_abs']:.1e}.")

    s = test["summary"]
    print(f"\n### Test split ({test['records']} records, never used for training, model selection "
          f"or thresholds): trainer (f32), thresholds from validation, 95 % bootstrap intervals "
          f"({test['bootstrap_resamples']} resamples)\n")
    print("| class | support | AUC | F1 | precision (PPV) | recall (sensitivity) |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in test["classes"]:
        print(f"| {c['name']} | {c['support']} | {f(c['auc'])} | {f(c['f1'])} | {f(c['precision'])} | "
              f"{f(c['recall'])} |")
    for k in ["macro_auc", "micro_auc", "macro_f1", "micro_f1"]:
        v = s[k]
        print(f"\n- {k.replace('_', ' ')}: {f(v['value'])} (95 % CI {f(v['low'])} to {f(v['high'])})", end="")
    print("\n")
    if test.get("rules"):
        print("### Beside a trivial rule (test split, same records, paired bootstrap)\n")
        print("| class | rule | rule AUC (95 % CI) | EKnet AUC | EKnet - rule (95 % CI) | rule could not measure |")
        print("|---|---|---:|---:|---:|---:|")
        for r in test["rules"]:
            m = test_by[r["class"]]
            print(f"| {r['class']} | {r['rule']} | {f(r['auc']['value'])} ({f(r['auc']['low'])}-{f(r['auc']['high'])}) | "
                  f"{f(m['auc'])} | {r['model_minus_rule']['value']:+.3f} ({r['model_minus_rule']['low']:+.3f} to "
                  f"{r['model_minus_rule']['high']:+.3f}) | {r['unmeasured']} |")
        print()
    if a.baseline:
        b = json.load(open(a.baseline))
        b_by = {c["name"]: c for c in b["classes"]}
        print(f"### Beside a plain 1D CNN ({b['model']}, {b['parameters']:,} parameters; same split, "
              f"recipe and epochs, best validation epoch {b['best_epoch']})\n")
        print("| class | support | EKnet AUC | CNN AUC |")
        print("|---|---:|---:|---:|")
        for c in test["classes"]:
            print(f"| {c['name']} | {c['support']} | {f(c['auc'])} | {f(b_by[c['name']]['auc'])} |")
        bm = b["summary"]["macro_auc"]
        print(f"| **macro** | | **{f(s['macro_auc']['value'])}** ({f(s['macro_auc']['low'])}-{f(s['macro_auc']['high'])}) | "
              f"**{f(bm['value'])}** ({f(bm['low'])}-{f(bm['high'])}) |\n")
    vs = val["summary"]
    print(f"Validation (trainer, f32): macro AUC {f(vs['macro_auc']['value'])} "
          f"(95 % CI {f(vs['macro_auc']['low'])} to {f(vs['macro_auc']['high'])}).\n")
    print("### Bundle\n")
    for name, (size, packed) in sorted(sizes.items()):
        print(f"- `{name}`: {size} bytes ({packed} compressed)")


if __name__ == "__main__":
    main()
