#!/usr/bin/env python3
"""Training speed of eknet's burn trainer against the PyTorch reference port, in one run.

Runs, for ROUNDS rounds, interleaved so the machine's drift touches every runtime alike:
`eknet-train bench --json` (this build, and optionally an earlier build given by --before) and
`tools/torch-reference/bench_torch.py`, each at every thread count given; then prints, per
config, stage and what was timed, the median over rounds of each runtime's median step time,
ECGs/s, and each burn build's ratio to PyTorch at both runtimes' best thread counts.

    python3 tools/bench_training.py --rounds 3 --threads 1 2 \\
        --before /tmp/eknet-train.before --json /tmp/training.json

Needs `pip install torch numpy` and a release build (`cargo build --release -p eknet-trainer`).
"""
import argparse, json, os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "small": ["configs/EKnet_classification_small.yaml", "configs/EKnet_self_learning_small.yaml"],
    "full": ["configs/EKnet_classification.yaml", "configs/EKnet_self_learning.yaml"],
}


def burn(exe, size, threads, batch, steps):
    # The thread count through rayon's variable, which builds before `bench --threads` also read.
    cmd = [exe, "bench", "--json", "--batch", str(batch), "--steps", str(steps)]
    for c in CONFIGS[size]:
        cmd += ["--config", c]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    for r in rows:
        r.setdefault("stage", 1 if "stage 1" in r["what"] else 0 if "batch" in r["what"] else 2)
    return [r for r in rows if r["stage"] in (1, 2)]


def torch(size, threads, batch, steps):
    cmd = [sys.executable, os.path.join(ROOT, "tools/torch-reference/bench_torch.py"), "--threads",
           str(threads), "--config", size, "--batch", str(batch), "--steps", str(steps)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", default=os.path.join(ROOT, "target/release/eknet-train"))
    ap.add_argument("--before", help="an earlier eknet-train build to time beside this one")
    ap.add_argument("--size", choices=CONFIGS, action="append")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", help="write every row here")
    a = ap.parse_args()
    runtimes = [("burn", a.exe)] + ([("burn-before", a.before)] if a.before else []) + [("pytorch", None)]
    rows = []
    for rnd in range(a.rounds):
        for size in a.size or ["small"]:
            for threads in a.threads:
                for name, exe in runtimes:
                    got = torch(size, threads, a.batch, a.steps) if exe is None else burn(exe, size, threads, a.batch, a.steps)
                    for r in got:
                        r.update(runtime=name, round=rnd, threads=threads)
                        rows.append(r)
                    print(f"round {rnd + 1}/{a.rounds} {size} {name} {threads} thread(s): "
                          + ", ".join(f"{r['what']} {r['median_s'] * 1e3:.1f} ms" for r in got), file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    # median over rounds per (config, what, runtime, threads)
    table = {}
    for r in rows:
        table.setdefault((r["config"], r["what"], r["runtime"], r["threads"]), []).append(r["median_s"])
    keys = sorted({(c, w) for c, w, _, _ in table})
    print(f"{'config':<28} {'what':<24} {'runtime':<12} " + " ".join(f"{t:>2} thr ms" for t in a.threads)
          + "   best ms   ECGs/s  / pytorch")
    for config, what in keys:
        best = {}
        for name, _ in runtimes:
            meds = {t: statistics.median(table[(config, what, name, t)]) for t in a.threads
                    if (config, what, name, t) in table}
            if meds:
                best[name] = min(meds.values())
        for name, _ in runtimes:
            meds = [statistics.median(table[(config, what, name, t)]) if (config, what, name, t) in table else float("nan")
                    for t in a.threads]
            if name not in best:
                continue
            ratio = best[name] / best["pytorch"] if "pytorch" in best else float("nan")
            print(f"{config:<28} {what:<24} {name:<12} " + " ".join(f"{m * 1e3:>9.1f}" for m in meds)
                  + f" {best[name] * 1e3:>9.1f} {a.batch / best[name]:>8.1f} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
