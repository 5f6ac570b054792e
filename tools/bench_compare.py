#!/usr/bin/env python3
"""tract (as eknetd loads a bundle) against onnxruntime on the same two ONNX files, the same input
window and the same machine, in one run: median and p90 ms per window (batch 1), and the ratios.

  python3 tools/bench_compare.py BUNDLE.eknet [--eknetd target/release/eknetd] [--threads 1 2]
                                 [--runs 30] [--record RECORD] [--json OUT.json]

For each thread count: `eknetd bench --json` times tract f32 and int8 (5 warm-ups, --runs timed
runs) and writes its input window; onnxruntime then times both graphs of the bundle on that same
window (CPU provider, sequential, intra-op threads = the same count; 5 warm-ups, --runs timed
runs, as ../shared/tools/ort_bench.py does). That both engines compute the same function is
checked separately by tools/ort_check.py.

Needs: pip install onnxruntime numpy; an eknetd release build (cargo build --release -p eknet-daemon).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import onnxruntime as ort


def ort_time(path, threads, x, runs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    out = None
    for _ in range(5):
        out = s.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = s.run(None, {name: x})
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 90)), out[0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("--eknetd", default="target/release/eknetd")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--record")
    p.add_argument("--json")
    a = p.parse_args()
    if a.runs < 30:
        sys.exit("bench_compare: use at least 30 runs")
    tmp = tempfile.mkdtemp(prefix="eknet-bench-")
    with zipfile.ZipFile(a.bundle) as z:
        z.extract("model.onnx", tmp)
        z.extract("model.int8.onnx", tmp)
        manifest = json.loads(z.read("manifest.json"))
    files = {"f32": os.path.join(tmp, "model.onnx"), "int8": os.path.join(tmp, "model.int8.onnx")}
    sizes = {k: os.path.getsize(v) for k, v in files.items()}
    rows = []
    kernel = None
    for t in a.threads:
        xin = os.path.join(tmp, "window.f32")
        cmd = [a.eknetd, "bench", "--bundle", a.bundle, "--threads", str(t), "--runs", str(a.runs),
               "--json", "--dump-input", xin]
        if a.record:
            cmd += ["--record", a.record]
        tr = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        kernel = tr.get("int8_kernel", "tract's generic kernels")
        x = np.fromfile(xin, dtype="<f4").reshape(1, 15, 1250)
        for prec in ("f32", "int8"):
            med, p90, _ = ort_time(files[prec], t, x, a.runs)
            rows.append({
                "threads": t, "precision": prec,
                "tract_ms": tr[f"{prec}_ms"], "tract_p90_ms": tr[f"{prec}_p90_ms"],
                "ort_ms": med, "ort_p90_ms": p90,
            })
    print(f"model {manifest['model_id']}: D {manifest['architecture'].get('d_model')}, "
          f"f32 graph {sizes['f32']} B, int8 graph {sizes['int8']} B; onnxruntime {ort.__version__}; "
          f"{a.runs} runs, median (p90) ms per window, batch 1; tract's int8 products on {kernel}")
    print(f"{'threads':>7} {'precision':>9} {'tract':>18} {'onnxruntime':>18} {'tract/ort':>9}")
    for r in rows:
        print(f"{r['threads']:>7} {r['precision']:>9} "
              f"{r['tract_ms']:>8.2f} ({r['tract_p90_ms']:>7.2f}) {r['ort_ms']:>8.2f} ({r['ort_p90_ms']:>7.2f}) "
              f"{r['tract_ms'] / r['ort_ms']:>9.2f}")
    for t in a.threads:
        f = {r["precision"]: r for r in rows if r["threads"] == t}
        print(f"threads {t}: int8/f32 tract {f['int8']['tract_ms'] / f['f32']['tract_ms']:.2f}, "
              f"onnxruntime {f['int8']['ort_ms'] / f['f32']['ort_ms']:.2f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"model_id": manifest["model_id"], "sizes": sizes, "runs": a.runs,
                       "onnxruntime": ort.__version__, "int8_kernel": kernel, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
