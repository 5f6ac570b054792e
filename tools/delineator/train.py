"""Trains the learned delineator (a small 1-D U-Net over the twelve prepared leads) on LUDB.

Input: the dump written by `cargo run --release -p eknet-shared --example ludb_dump -- DIR`
(the leads exactly as the measurement engine prepares them, and the global reference waves).
Output: the weights file the Rust engine embeds (`shared/assets/delineator.bin`), with batch
norm folded into the convolutions and a self-check vector (the network's output on a fixed input)
the Rust tests compare against.

Records 1-100 train it; 101-200 are held out for the final figures (`--train 1-100`); choices
are made inside 1-100 (`--train 1-50 --val 51-100` and the reverse, scored by the Rust example
with `LUDB_WEIGHTS=file LUDB_RANGE=51-100 LUDB_ONLY_A=1`).
The shipped file, one per-lead network (one input lead, each lead's own annotation):
  python3 tools/delineator/train.py --data DIR --out A.bin --train 1-100 --stretch 0.15 --seed 1 --per-lead --widths 8,16,24,32
  python3 tools/delineator/train.py combine shared/assets/delineator.bin A.bin
(`combine` with several files makes an ensemble whose scores are averaged.)
"""
import argparse, json, math, os, random, struct, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RATE = 500
N = 5000
LEADS = 12
CLASSES = 4  # background, P, QRS, T
K = 9


def load(data, ids):
    refs = json.load(open(os.path.join(data, "reference.json")))
    xs, ys, ms = [], [], []
    for k in ids:
        x = np.fromfile(os.path.join(data, f"{k}.f32"), dtype="<f4").reshape(LEADS, N)
        r = refs[str(k)]
        y = np.zeros(N, dtype=np.int64)
        m = np.zeros(N, dtype=np.float32)
        if r["span"] is not None:
            a, b = r["span"]
            m[a : b + 1] = 1.0
        for cls, key in ((1, "p"), (2, "qrs"), (3, "t")):
            for w in r[key]:
                on = w["onset"] if w["onset"] is not None else w["peak"]
                off = w["offset"] if w["offset"] is not None else w["peak"]
                y[on : off + 1] = cls
        yl = np.zeros((LEADS, N), dtype=np.int64)
        for lead, waves in enumerate(r.get("leads", [])):
            for kind, on, peak, off in waves:
                cls = {"p": 1, "qrs": 2, "t": 3}[kind]
                on = peak if on is None else on
                off = peak if off is None else off
                yl[lead, on : off + 1] = cls
        xs.append(x)
        ys.append(np.concatenate([y[None], yl]))
        ms.append(m)
    return np.stack(xs), np.stack(ys), np.stack(ms), refs


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.c1 = nn.Conv1d(cin, cout, K, padding=K // 2)
        self.b1 = nn.BatchNorm1d(cout)
        self.c2 = nn.Conv1d(cout, cout, K, padding=K // 2)
        self.b2 = nn.BatchNorm1d(cout)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(x)))


class UNet(nn.Module):
    def __init__(self, widths, aux, cin=LEADS):
        super().__init__()
        w = widths
        self.levels = len(w)
        cins = [cin] + w[:-1]
        self.enc = nn.ModuleList([Block(cins[i], w[i]) for i in range(len(w))])
        self.dec = nn.ModuleList([Block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1))])
        # Global classes, then (when training with the per-lead targets) each lead's classes.
        self.head = nn.Conv1d(w[0], CLASSES * (1 + (LEADS if aux else 0)), 1)

    def forward(self, x):
        skips = []
        for i, e in enumerate(self.enc):
            x = e(x)
            if i < self.levels - 1:
                skips.append(x)
                x = F.max_pool1d(x, 2)
        for d in self.dec:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-1], mode="nearest")
            x = d(torch.cat([x, s], 1))
        return self.head(x)


def augment(x, rng):
    b, c, n = x.shape
    x = x * torch.empty(b, 1, 1).uniform_(0.6, 1.6) * torch.empty(b, c, 1).uniform_(0.8, 1.25)
    x = x + torch.randn_like(x) * torch.empty(b, 1, 1).uniform_(0.0, 0.04)
    t = torch.arange(n).float() / RATE
    f = torch.empty(b, 1, 1).uniform_(0.05, 0.6)
    ph = torch.empty(b, c, 1).uniform_(0, 2 * math.pi)
    x = x + torch.empty(b, c, 1).uniform_(0, 0.15) * torch.sin(2 * math.pi * f * t + ph)
    if c == 1:
        return x
    drop = (torch.rand(b, c, 1) < 0.08).float()
    return x * (1 - drop)


def segments(lab, cls, min_len):
    out, i, n = [], 0, len(lab)
    while i < n:
        if lab[i] == cls:
            j = i
            while j + 1 < n and lab[j + 1] == cls:
                j += 1
            if j - i + 1 >= min_len:
                out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def score(det, ref, span, window=75):
    lo, hi = span[0] - window, span[1] + window
    det = [d for d in det if lo <= d <= hi]
    pairs = sorted((abs(d - r), i, j) for i, d in enumerate(det) for j, r in enumerate(ref) if abs(d - r) <= window)
    du, ru, errs = set(), set(), []
    for _, i, j in pairs:
        if i not in du and j not in ru:
            du.add(i); ru.add(j); errs.append((det[i] - ref[j]) * 2.0)
    fp = sum(1 for i, d in enumerate(det) if i not in du and span[0] <= d <= span[1])
    return len(errs), len(ref) - len(ru), fp, errs


def evaluate(model, x, refs, ids):
    model.eval()
    with torch.no_grad():
        lab = model(torch.from_numpy(x))[:, :CLASSES].argmax(1).numpy()
    tot = {k: [0, 0, 0, []] for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")}
    for row, k in enumerate(ids):
        r = refs[str(k)]
        if r["span"] is None:
            continue
        segs = {1: segments(lab[row], 1, 10), 2: segments(lab[row], 2, 10), 3: segments(lab[row], 3, 20)}
        det = {"p_on": [s for s, _ in segs[1]], "p_off": [e for _, e in segs[1]],
               "qrs_on": [s for s, _ in segs[2]], "qrs_off": [e for _, e in segs[2]], "t_off": [e for _, e in segs[3]]}
        rf = {"p_on": [w["onset"] for w in r["p"] if w["onset"] is not None],
              "p_off": [w["offset"] for w in r["p"] if w["offset"] is not None],
              "qrs_on": [w["onset"] for w in r["qrs"] if w["onset"] is not None],
              "qrs_off": [w["offset"] for w in r["qrs"] if w["offset"] is not None],
              "t_off": [w["offset"] for w in r["t"] if w["offset"] is not None]}
        for key in tot:
            if key.startswith("p") and not r["p"]:
                continue
            tp, fn, fp, e = score(det[key], rf[key], r["span"])
            t = tot[key]; t[0] += tp; t[1] += fn; t[2] += fp; t[3] += e
    lines = []
    for key, (tp, fn, fp, e) in tot.items():
        e = np.array(e)
        lines.append(f"{key:8s} Se {100*tp/max(tp+fn,1):6.2f} PPV {100*tp/max(tp+fp,1):6.2f} mean {e.mean():6.2f} SD {e.std():6.2f}")
    model.train()
    return "\n".join(lines)


def fold(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * s[:, None, None]
    b = (conv.bias - bn.running_mean) * s + bn.bias
    return w.detach().float().numpy(), b.detach().float().numpy()


def net_bytes(model):
    """One network: its layer count, then per layer cout, cin, taps, weights, biases."""
    model.eval()
    layers = []
    for blk in list(model.enc) + list(model.dec):
        layers.append(fold(blk.c1, blk.b1))
        layers.append(fold(blk.c2, blk.b2))
    # Only the global classes are exported: the per-lead rows served training alone.
    layers.append((model.head.weight[:CLASSES].detach().numpy(), model.head.bias[:CLASSES].detach().numpy()))
    out = [struct.pack("<I", len(layers))]
    for w, b in layers:
        cout, cin, k = w.shape
        out.append(struct.pack("<III", cout, cin, k))
        out.append(w.astype("<f4").tobytes())
        out.append(b.astype("<f4").tobytes())
    return b"".join(out)


def probe_input():
    g = torch.Generator().manual_seed(7)
    return torch.randn(1, LEADS, 256, generator=g) * 0.3


def write(path, nets, probe_out, meta):
    """The weights file (format in shared/src/measure/learned.rs): the nets' class scores are
    averaged; the probe output is that average on the probe input."""
    probe = probe_input()
    meta_b = json.dumps(meta).encode()
    with open(path, "wb") as f:
        f.write(b"EKDL")
        f.write(struct.pack("<IIII", 1, len(nets), len(meta_b), probe.shape[-1]))
        f.write(meta_b)
        for n in nets:
            f.write(n)
        f.write(probe[0].numpy().astype("<f4").tobytes())
        f.write(np.asarray(probe_out, dtype="<f4").tobytes())


def export(model, path, meta, per_lead=False):
    model.eval()
    with torch.no_grad():
        if per_lead:
            # Each probe lead on its own: `[12][4][probe]`.
            out = model(probe_input()[0][:, None, :])[:, :CLASSES].numpy()
        else:
            out = model(probe_input())[0, :CLASSES].numpy()
    write(path, [net_bytes(model)], out, meta)


def read(path):
    """A weights file's nets (raw bytes each), probe output and metadata."""
    b = open(path, "rb").read()
    assert b[:4] == b"EKDL", path
    version, count, meta_len, probe_len = struct.unpack_from("<IIII", b, 4)
    at = 20
    meta = json.loads(b[at : at + meta_len]); at += meta_len
    nets = []
    for _ in range(count):
        start = at
        (layers,) = struct.unpack_from("<I", b, at); at += 4
        for _ in range(layers):
            cout, cin, k = struct.unpack_from("<III", b, at); at += 12
            at += 4 * (cout * cin * k + cout)
        nets.append(b[start:at])
    at += 4 * LEADS * probe_len
    out = np.frombuffer(b[at:], dtype="<f4")
    return nets, out, meta


def combine(paths, out_path):
    """An ensemble file from single-network files trained alike (different seeds)."""
    nets, outs, metas = [], [], []
    for p in paths:
        n, o, m = read(p)
        nets += n; outs.append(o * len(n)); metas.append(m)
    total = len(nets)
    write(out_path, nets, sum(outs) / total, {"ensemble": metas})
    print("wrote", out_path, "with", total, "networks")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "combine":
        # python3 train.py combine OUT IN...
        combine(sys.argv[3:], sys.argv[2])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", default="1-100")
    ap.add_argument("--held-out", default="none", help="records scored once at the end (the final figures only)")
    ap.add_argument("--val", default=None, help="records scored during training (tuning)")
    ap.add_argument("--aux", type=float, default=0.0, help="weight of the per-lead targets' loss")
    ap.add_argument("--widths", default="16,32,48,64")
    ap.add_argument("--stretch", type=float, default=0.0, help="time stretch range (0.15: 0.85-1.15)")
    ap.add_argument("--per-lead", action="store_true", help="one input lead, trained on each lead's own annotation")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--crop", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(args.seed); random.seed(args.seed); np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = lambda s: [] if s == "none" else list(range(int(s.split("-")[0]), int(s.split("-")[1]) + 1))
    tr_ids, te_ids = rng(args.train), rng(args.held_out)
    xtr, ytr, mtr, refs = load(args.data, tr_ids)
    xte = load(args.data, te_ids)[0] if te_ids else None
    va_ids = rng(args.val) if args.val else []
    xva = load(args.data, va_ids)[0] if va_ids else None
    widths = [int(v) for v in args.widths.split(",")]
    model = UNet(widths, args.aux > 0, 1 if args.per_lead else LEADS)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(tr_ids) // args.batch) * 2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    weights = torch.tensor([1.0, 1.5, 1.5, 1.0])
    t0 = time.time()
    for ep in range(args.epochs):
        tot = 0.0
        for _ in range(steps_per_epoch):
            idx = np.random.randint(0, len(tr_ids), args.batch)
            xs, ys, ms = [], [], []
            for i in idx:
                # Time stretch: a crop of `span` samples resampled to `crop` (heart rate and
                # interval variety the 100 records lack).
                f = np.random.uniform(1 - args.stretch, 1 + args.stretch) if args.stretch > 0 else 1.0
                span = min(N, int(round(args.crop * f)))
                a, b = np.nonzero(mtr[i])[0][[0, -1]]
                lo = max(0, min(a - span // 4, N - span))
                hi = max(lo, min(b + span // 4, N) - span)
                s = np.random.randint(lo, hi + 1)
                if span == args.crop:
                    xs.append(xtr[i, :, s : s + args.crop]); ys.append(ytr[i, :, s : s + args.crop]); ms.append(mtr[i, s : s + args.crop])
                else:
                    pos = s + np.arange(args.crop) * (span - 1) / (args.crop - 1)
                    j = np.floor(pos).astype(int); fr = (pos - j).astype(np.float32); j1 = np.minimum(j + 1, N - 1)
                    xs.append((xtr[i][:, j] * (1 - fr) + xtr[i][:, j1] * fr).astype(np.float32))
                    near = np.rint(pos).astype(int)
                    ys.append(ytr[i][:, near]); ms.append(mtr[i][near])
            x = torch.from_numpy(np.stack(xs))
            y = torch.from_numpy(np.stack(ys)); m = torch.from_numpy(np.stack(ms))
            if args.per_lead:
                # One random lead per crop, with that lead's own annotation as the target.
                lead = torch.randint(0, LEADS, (x.shape[0],))
                rows = torch.arange(x.shape[0])
                x = x[rows, lead][:, None, :]
                y = torch.stack([y[rows, 1 + lead], y[rows, 1 + lead]], 1)
            x = augment(x, None)
            z = model(x)
            loss = (F.cross_entropy(z[:, :CLASSES], y[:, 0], weight=weights, reduction="none") * m).sum() / m.sum().clamp(min=1)
            if args.aux > 0:
                b_, _, n_ = z.shape
                zl = z[:, CLASSES:].reshape(b_, LEADS, CLASSES, n_).transpose(1, 2)
                per = F.cross_entropy(zl, y[:, 1:], weight=weights, reduction="none") * m[:, None]
                loss = loss + args.aux * per.sum() / (LEADS * m.sum().clamp(min=1))
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            tot += loss.item()
        if ep % 10 == 9 or ep == args.epochs - 1:
            print(f"epoch {ep+1} loss {tot/steps_per_epoch:.4f} {time.time()-t0:.0f}s", flush=True)
        if xva is not None and (ep % 50 == 49 or ep == args.epochs - 1):
            print(f"validation {args.val}:\n" + evaluate(model, xva, refs, va_ids), flush=True)
    if args.held_out != "none":
        print(f"held out {args.held_out}:\n" + evaluate(model, xte, refs, te_ids), flush=True)
    meta = {"train_records": args.train, "held_out": args.held_out, "epochs": args.epochs, "seed": args.seed,
            "crop": args.crop, "batch": args.batch, "lr": args.lr, "widths": widths, "kernel": K, "aux": args.aux, "stretch": args.stretch, "per_lead": args.per_lead}
    export(model, args.out, meta, args.per_lead)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
