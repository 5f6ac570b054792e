"""Exploration for the next step of the learned delineator: a per-lead U-Net (one input channel,
trained on each lead's own LUDB annotation, 12 times the labels) against the global 12-lead net,
both trained alike on records 1-50 (1,800 steps) and scored on records 51-100 against the global
reference; the per-lead model's boundaries are aggregated over the leads as the reference is
(onset = k-th earliest, offset = k-th latest). Each reference wave is matched to the predicted
waves overlapping its peak, so the figures compare the two models with each other only, not with
the Rust pipeline's table.

  python3 tools/delineator/explore_per_lead.py lead    # or: global

Result on 2026-12-02 (Intel Xeon, 2 threads), SD in ms, per-lead k=0 vs global:
P on 13.7 vs 16.0, P off 12.1 vs 12.8, QRS on 7.3 vs 10.4, QRS off 9.9 vs 20.1, T off 25.5 vs 36.9.
Needs the dump of `cargo run --release -p eknet-shared --example ludb_dump -- /tmp/ludb_dump`.
"""
import sys, json, numpy as np, torch, torch.nn.functional as F, time
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import train as T
torch.manual_seed(1); np.random.seed(1); torch.set_num_threads(2)
LEADS=12; N=5000
mode=sys.argv[1]  # "lead" or "global"
tr=list(range(1,51)); va=list(range(51,101))
x, y, m, refs = T.load("/tmp/ludb_dump", tr)
xv, yv, mv, _ = T.load("/tmp/ludb_dump", va)
cin = 1 if mode=="lead" else 12
model = T.UNet([16,32,48,64], False, cin)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
steps = 1800
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
wts = torch.tensor([1.0,1.5,1.5,1.0]); crop=2048; B=16
t0=time.time()
for st in range(steps):
    xs,ys,ms=[],[],[]
    for _ in range(B):
        i=np.random.randint(len(tr)); a,b=np.nonzero(m[i])[0][[0,-1]]
        lo=max(0,min(a-crop//4,N-crop)); hi=max(lo,min(b+crop//4,N)-crop); s=np.random.randint(lo,hi+1)
        if mode=="lead":
            l=np.random.randint(12); xs.append(x[i,l:l+1,s:s+crop]); ys.append(y[i,1+l,s:s+crop])
        else:
            xs.append(x[i,:,s:s+crop]); ys.append(y[i,0,s:s+crop])
        ms.append(m[i,s:s+crop])
    xb=torch.from_numpy(np.stack(xs)); 
    xb = xb*torch.empty(B,1,1).uniform_(0.6,1.6) + torch.randn_like(xb)*torch.empty(B,1,1).uniform_(0,0.04)
    yb=torch.from_numpy(np.stack(ys)); mb=torch.from_numpy(np.stack(ms))
    loss=(F.cross_entropy(model(xb)[:, :4],yb,weight=wts,reduction="none")*mb).sum()/mb.sum()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if st%300==299: print(st+1, round(loss.item(),4), round(time.time()-t0), flush=True)
model.eval()
def segs(lab,c,mn): return T.segments(lab,c,mn)
res={k:[] for k in ["p_on","p_off","qrs_on","qrs_off","t_off"]}
with torch.no_grad():
    for row,k in enumerate(va):
        r=refs[str(k)]
        if mode=="lead":
            labs=model(torch.from_numpy(xv[row][:,None,:])).argmax(1).numpy()  # 12 x N
        else:
            labs=model(torch.from_numpy(xv[row][None])).argmax(1).numpy()
        # per reference wave: candidate boundaries per lead within +-75 samples of the ref wave
        for kind,cls,mn in (("p",1,10),("qrs",2,10),("t",3,20)):
            for w in r[kind]:
                for bkey,idx,ref in ((kind+"_on",0,w["onset"]),(kind+"_off",1,w["offset"])):
                    if bkey not in res or ref is None: continue
                    cands=[]
                    for lab in labs:
                        ss=[sg for sg in segs(lab,cls,mn) if sg[0]<=w["peak"]+40 and sg[1]>=w["peak"]-40]
                        if ss: cands.append(ss[0][idx])
                    if not cands: continue
                    cands=sorted(cands)
                    res[bkey].append((cands, ref))
def score(kth):
    out=[]
    for key,v in res.items():
        e=[]
        for c,ref in v:
            j=min(kth,len(c)-1)
            d=c[j] if key.endswith("_on") else c[-1-j]
            if abs(d-ref)<=75: e.append((d-ref)*2)
        e=np.array(e); out.append(f"{key} n {len(e)} mean {e.mean():.1f} SD {e.std():.1f}")
    return "; ".join(out)
for kth in ([0,1,2,3] if mode=="lead" else [0]):
    print(mode, "k", kth, score(kth))
