"""Measurements on ECGs labelled normal: runs `eknet-train measure --json` on the PhysioNet/CinC
and CPSC 2018 records whose only label is sinus rhythm (SNOMED CT 426783006) and on LUDB's records
whose only statements are sinus rhythm and a normal axis, and prints the distribution of QRS
duration and QTc with how often the wide-QRS and long-QTc statements fire. A calibration check:
the engine is fitted to LUDB's global reference (earliest onset, latest offset over twelve leads
marked independently), and this shows what that means on normal ECGs.

  cargo build --release -p eknet-trainer
  python3 tools/measure_normals.py [target/release/eknet-train] [../shared/data]
"""
import json, os, re, statistics, subprocess, sys

exe = sys.argv[1] if len(sys.argv) > 1 else "target/release/eknet-train"
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"


def cinc_normals():
    out = []
    for folder in ("cinc/records", "cpsc2018/records"):
        d = os.path.join(data, folder)
        for f in sorted(os.listdir(d)):
            if not f.endswith(".hea"):
                continue
            m = re.search(r"#\s*Dx:\s*(.*)", open(os.path.join(d, f)).read())
            if m and set(m.group(1).strip().split(",")) == {"426783006"}:
                out.append(os.path.join(d, f[:-4]))
    return out


def ludb_normals():
    d = os.path.join(data, "ludb", "data")
    out = []
    for k in range(1, 201):
        h = open(os.path.join(d, f"{k}.hea")).read()
        stated = [l for l in h.splitlines() if l.startswith("#") and not l.startswith("#<")]
        if len(stated) <= 2 and "Sinus rhythm" in h and "Electric axis of the heart: normal" in h:
            out.append(os.path.join(d, str(k)))
    return out


def report(name, records):
    lines = subprocess.run([exe, "measure", "--json", *records], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    rows = [json.loads(l) for l in lines]
    qrs = [r["qrs_ms"] for r in rows if r["qrs_ms"] is not None]
    qtc = [r["qtc_bazett_ms"] for r in rows if r["qtc_bazett_ms"] is not None]
    codes = [s["code"] for r in rows for s in r["statements"]]
    print(f"{name}: {len(rows)} records, {len(qrs)} measured")
    print(f"  QRS ms: median {statistics.median(qrs):.0f}, range {min(qrs):.0f}-{max(qrs):.0f}; "
          f"wide QRS statement on {codes.count('wide_qrs')}")
    print(f"  QTc Bazett ms: median {statistics.median(qtc):.0f}; long QTc statement on "
          f"{codes.count('long_qtc')}")


report("CinC + CPSC 2018, labelled sinus rhythm only", cinc_normals())
report("LUDB, sinus rhythm and normal axis only", ludb_normals())
