"""Training-step and evaluation throughput of the PyTorch port (CPU), by the protocol of
`eknet-train bench` (trainer/src/bench.rs): random N(0, 0.5) inputs, 2 warm-up steps, median of
the timed steps. Stage 2: forward with token drop, two-way cross-entropy, backward, AdamW step;
then the evaluation forward (no drop, no grad). Stage 1: forward with token drop 0.85 on one
token group, mean squared error over all samples, backward, AdamW step.

    python3 bench_torch.py --threads 1 --config small --stage 2 --batch 16 --steps 10

One JSON line per (config, stage), keys as `eknet-train bench --json`."""
import argparse, json, os, statistics, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ekmodel import EKnet  # noqa: E402

SIZES = {
    # name: (D, encoder blocks, heads, knowledge layers, stage-2 classes) as in configs/
    "small": (64, 3, 4, 2, 18),
    "full": (256, 9, 8, 3, 70),
}

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--config", choices=SIZES, action="append")
ap.add_argument("--stage", type=int, choices=[1, 2], action="append")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=10)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

for cfg in a.config or ["small"]:
    d, depth, heads, kdepth, classes = SIZES[cfg]
    for stage in a.stage or [2, 1]:
        ratio = 0.65 if stage == 2 else 0.85
        m = EKnet(d=d, depth=depth, heads=heads, kdepth=kdepth, classes=classes,
                  lead_split=(stage == 2), stage=stage)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(1)
        b = a.batch
        y = (torch.arange(b * classes) % 2).view(b, classes)
        times = []
        for i in range(2 + a.steps):
            x = torch.randn(b, 15, 1250) * 0.5
            t = time.perf_counter()
            plan = m.draw_plan(b, ratio, gen)
            out = m(x, plan)[0]
            if stage == 2:
                loss = F.cross_entropy(out.reshape(-1, 2), y.reshape(-1))
            else:
                loss = ((out - x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        params = sum(p.numel() for p in m.parameters())
        name = f"EKnet_{'classification' if stage == 2 else 'self_learning'}{'_small' if cfg == 'small' else ''}"
        med = statistics.median(times)
        rows = [dict(what=f"stage {stage} training step", config=name, stage=stage, batch=b,
                     median_s=med, ecgs_per_s=b / med, params=params, backend="pytorch-cpu",
                     threads=a.threads)]
        if stage == 2:
            m.eval()
            te = []
            with torch.no_grad():
                for i in range(2 + a.steps):
                    x = torch.randn(b, 15, 1250) * 0.5
                    t = time.perf_counter()
                    m(x, None)
                    if i >= 2:
                        te.append(time.perf_counter() - t)
            med = statistics.median(te)
            rows.append(dict(what="evaluation forward", config=name, stage=stage, batch=b,
                             median_s=med, ecgs_per_s=b / med, params=params,
                             backend="pytorch-cpu", threads=a.threads))
        for r in rows:
            print(json.dumps(r), flush=True)
