#!/usr/bin/env python3
"""Third-party check of a model bundle: the ONNX checker and onnxruntime on both graphs.

  eknet-train verify BUNDLE.eknet --dump DIR      # tract's outputs on the verify windows
  python3 tools/ort_check.py BUNDLE.eknet DIR [--runs 30] [--threads 1 2]

Needs: pip install onnxruntime numpy onnx. Extracts model.onnx and model.int8.onnx, checks each with
onnx.checker (full check, shape inference), runs both in onnxruntime on the windows `verify --dump`
wrote (windows.f32: raw little-endian f32, [n, 15, 1250]), compares scores and attention with
tract's (tract.json), and times one window (batch 1, 5 warm-ups, median and p90 of --runs) per
thread count. Exits 1 when f32 scores differ by more than 1e-4, or int8 scores by more than 0.02.
"""
import argparse, hashlib, json, os, sys, tempfile, time, zipfile
import numpy as np
import onnx
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("bundle"); p.add_argument("dump")
p.add_argument("--runs", type=int, default=30)
p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
a = p.parse_args()

z = zipfile.ZipFile(a.bundle)
manifest = json.loads(z.read("manifest.json"))
tmp = tempfile.mkdtemp()
tract = json.load(open(os.path.join(a.dump, "tract.json")))
x_all = np.fromfile(os.path.join(a.dump, "windows.f32"), dtype="<f4").reshape(-1, 15, 1250)
ok = True
for member, precision, tol in [("model.onnx", "f32", 1e-4), ("model.int8.onnx", "int8", 0.02)]:
    data = z.read(member)
    digest = hashlib.sha256(data).hexdigest()
    assert digest == manifest["members"][member]["sha256"], f"{member}: sha256 mismatch"
    path = os.path.join(tmp, member); open(path, "wb").write(data)
    onnx.checker.check_model(path, full_check=True)
    print(f"{member}: onnx.checker (full) OK, opset {onnx.load(path).opset_import[0].version}, {len(data)} bytes")
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    scores, attention = s.run(["scores", "attention"], {"ecg": x_all})
    t = tract[precision]
    ds = float(np.max(np.abs(scores - np.array(t["scores"], dtype=np.float32))))
    da = float(np.max(np.abs(attention - np.array(t["attention"], dtype=np.float32).reshape(attention.shape))))
    rows = float(np.max(np.abs(attention.sum(-1) - 1.0)))
    print(f"  onnxruntime {ort.__version__} vs tract on {len(x_all)} windows: max |score diff| {ds:.3g}, "
          f"max |attention diff| {da:.3g}; attention rows sum to 1 within {rows:.2g}")
    if not ds <= tol:
        print(f"  FAIL: {precision} scores differ by more than {tol}"); ok = False
    x = x_all[:1]
    for th in a.threads:
        so = ort.SessionOptions(); so.intra_op_num_threads = th; so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for _ in range(5): s.run(None, {"ecg": x})
        ts = []
        for _ in range(a.runs):
            t0 = time.perf_counter(); s.run(None, {"ecg": x}); ts.append((time.perf_counter() - t0) * 1e3)
        print(f"  onnxruntime {precision} threads={th}: median {np.median(ts):.2f} ms, p90 {np.percentile(ts, 90):.2f} ms")
sys.exit(0 if ok else 1)
