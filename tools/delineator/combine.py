"""Replays the measurement engine's use of the learned delineator in Python, from the JSON files
of `LUDB_DUMP=dir` (the `ludb_delineation` example: each record's rule-based beats, the network's
labels of each lead and the global reference), and tries other ways of combining the per-lead
boundaries, scored as the Rust table scores them (150 ms window, annotated span only).

Two-fold CV inside records 1-100, the fold networks of `train.py --per-lead --widths 8,16,24,32
--stretch 0.15 --train 1-50` (and 51-100), each scored on the other half:

  cargo build --release -p eknet-shared --example ludb_delineation
  LUDB_WEIGHTS=A.bin LUDB_RANGE=51-100 LUDB_DUMP=/tmp/d/a target/release/examples/ludb_delineation
  LUDB_WEIGHTS=B.bin LUDB_RANGE=1-50   LUDB_DUMP=/tmp/d/b target/release/examples/ludb_delineation
  python3 tools/delineator/combine.py /tmp/d/a /tmp/d/b replay|smooth|stack|offsets
  python3 tools/delineator/combine.py /tmp/d/a /tmp/d/b rescue /tmp/d/cinc 8 20 0.7 20

Results on 2026-12-02 (Intel Xeon, model 167), SD in ms of the pooled CV:
- replay: P on 15.11, P off 9.78, QRS on 7.84, QRS off 9.84, T off 22.24 (the Rust CV's figures).
- smooth (each beat's P on, P off and T off pulled towards the record's median time from the QRS
  onset, weight 1-alpha): alpha 0.75 T off 22.06, P on 15.13; alpha 0.5 22.33, 15.31; alpha 0
  24.08, 15.86. The annotation itself moves from beat to beat (`LUDB_SCATTER=1`).
- stack (least squares on the sorted per-lead boundaries, the rule-based one, RR; fitted on one
  fold, scored on the other): T off 22.40-23.63, P on 15.57-16.28, P off 10.73-11.28. Worse.
- rescue (where the rule-based delineator finds P waves in fewer than half the beats, take the
  network's: a P wave agreed by K leads within `agree` samples, at `frac` of the beats with a PR
  within `tol` of its median), judged on the 152 PhysioNet/CinC and CPSC 2018 records labelled
  sinus rhythm (or brady/tachycardia) and the 42 labelled AF/flutter, dumped by
  `cargo run --release -p eknet-shared --example delineation_dump -- /tmp/d/cinc RECORD...`;
  records with P waves, sinus / AF: shipped 140 / 2; K 8, agree 20, frac 0.7, tol 20: 141 / 5;
  K 6, frac 0.8, tol 15: 141 / 3; K 4, frac 0.6: 144 / 12; K 8, frac 0.5, tol 25: 142 / 9;
  K 10, frac 0.8: 140 / 2. Each sinus record won costs two or more AF records: not shipped.
- offsets (a constant per lead added before the earliest/latest, coordinate descent on one fold):
  T off 22.69 -> 23.16 and 21.81 -> 22.81, P on 17.64 -> 18.30 and 11.98 -> 12.19 on the other.
"""
import json, math, glob, numpy as np
LEADS=["I","II","III","aVR","aVL","aVF","V1","V2","V3","V4","V5","V6"]
def load(d):
    out=[]
    for f in sorted(glob.glob(d+"/*.json"), key=lambda s:int(s.split("/")[-1][:-5])):
        j=json.load(open(f))
        j["lab"]=[np.frombuffer(s.encode(),dtype=np.uint8)-48 for s in j["labels"]]
        out.append(j)
    return out
def segments(lab, cls, min_len, max_gap):
    runs=[]
    m=(lab==cls).astype(np.int8)
    if not m.any(): return runs
    d=np.diff(np.concatenate([[0],m,[0]]))
    ons=np.where(d==1)[0]; offs=np.where(d==-1)[0]-1
    for on,off in zip(ons,offs):
        if runs and on-runs[-1][1]-1<=max_gap: runs[-1][1]=off
        else: runs.append([on,off])
    return [(a,b) for a,b in runs if b-a+1>=min_len]
def found_in_row(beats, lab, p_overlap=True):
    n=len(lab)
    p=segments(lab,1,10,5); q=segments(lab,2,10,5); t=segments(lab,3,20,5)
    reach=30
    qrs_of=[]
    for b in beats:
        r=b[0]
        c=[s for s in q if s[0]<=r+reach and r<=s[1]+reach]
        if not c: qrs_of.append(None); continue
        qrs_of.append(min(c,key=lambda s:0 if s[0]<=r<=s[1] else min(abs(s[0]-r),abs(s[1]-r))))
    res=[]
    for i,b in enumerate(beats):
        qq=qrs_of[i]
        if qq is None: res.append(None); continue
        prev=[s for s in qrs_of[:i] if s is not None]; prev_end=prev[-1][1] if prev else 0
        nxt=[s for s in qrs_of[i+1:] if s is not None]; next_start=nxt[0][0] if nxt else n
        pw=None
        if b[1] is not None and b[2] is not None:
            for s in reversed(p):
                if s[1]<qq[0] and s[0]>prev_end and (not p_overlap or (s[0]<=b[2] and b[1]<=s[1])): pw=s;break
        tw=None
        for s in t:
            if s[0]>qq[1] and s[1]<next_start: tw=s;break
        on=lambda s: s[0] if s is not None and s[0]>0 else None
        off=lambda s: s[1] if s is not None and s[1]+1<n else None
        res.append([on(pw),off(pw),on(qq),off(qq),off(tw)])
    return res
def rnd(x): return int(math.floor(x+0.5))
def both(r,l,w):
    if r is not None and l is not None: return rnd(w*l+(1-w)*r)
    return r
def score(det, ref, span, window=75):
    lo=max(span[0]-window,0); hi=span[1]+window
    det=[d for d in det if lo<=d<=hi]
    pairs=sorted((abs(d-r),i,j) for i,d in enumerate(det) for j,r in enumerate(ref) if abs(d-r)<=window)
    du=[False]*len(det); ru=[False]*len(ref); err=[]
    for _,i,j in pairs:
        if not du[i] and not ru[j]:
            du[i]=ru[j]=True; err.append((det[i]-ref[j])*2.0)
    fn=ru.count(False); fp=sum(1 for d,u in zip(det,du) if not u and span[0]<=d<=span[1])
    return err,fn,fp
def evaluate(recs, combine):
    """combine(rec, found_rows) -> list of beats [r,p_on,p_off,qrs_on,qrs_off,t_off]"""
    tot=[[[],0,0] for _ in range(5)]
    for rec in recs:
        if rec["span"] is None: continue
        beats=combine(rec)
        for k in range(5):
            det=[b[k+1] for b in beats if b[k+1] is not None]
            e,fn,fp=score(det, rec["reference"][k], rec["span"])
            tot[k][0]+=e; tot[k][1]+=fn; tot[k][2]+=fp
    return tot
def report(tot, names=("P on","P off","QRS on","QRS off","T off")):
    out=[]
    for nm,(e,fn,fp) in zip(names,tot):
        e=np.array(e); tp=len(e)
        out.append(f"{nm:7s} Se {100*tp/(tp+fn):6.2f} PPV {100*tp/max(tp+fp,1):6.2f} mean {e.mean():6.2f} SD {e.std():6.2f}")
    return "\n".join(out)
def usable_rows(rec):
    return [rec["lab"][i] for i,l in enumerate(LEADS) if l not in rec["failed"]]
W=dict(p_on=.5,p_off=.75,qrs_on=.5,qrs_off=.5,t_off=.5)
def shipped(rec, w=W):
    beats=[list(b) for b in rec["beats"]]
    rows=[found_in_row(beats, lab) for lab in usable_rows(rec)]
    out=[]
    for i,b in enumerate(beats):
        f=[r[i] for r in rows if r[i] is not None]
        b=list(b)
        if f:
            e=lambda k:min([x[k] for x in f if x[k] is not None],default=None)
            l=lambda k:max([x[k] for x in f if x[k] is not None],default=None)
            b[3]=both(b[3],e(2),w["qrs_on"]); b[4]=both(b[4],l(3),w["qrs_off"])
            b[1]=both(b[1],e(0),w["p_on"]); b[2]=both(b[2],l(1),w["p_off"]); b[5]=both(b[5],l(4),w["t_off"])
        out.append(b)
    return out
def prep(recs):
    for rec in recs:
        beats=[list(b) for b in rec["beats"]]
        rows=[found_in_row(beats, lab) for lab in usable_rows(rec)]
        F=np.full((len(beats),max(len(rows),1),5),np.nan)
        for li,r in enumerate(rows):
            for i,f in enumerate(r):
                if f is not None:
                    F[i,li]=[np.nan if v is None else v for v in f]
        rec["F"]=F
        rec["has"]=np.array([[any(r[i] is not None for r in rows)] for i in range(len(beats))]).ravel() if beats else np.zeros(0,bool)
    return recs
def med_smooth(beats, k, anchor, alpha):
    """shrink boundary k (1..5) toward anchor + record median of (boundary-anchor)"""
    d=[b[k]-b[anchor] for b in beats if b[k] is not None and b[anchor] is not None]
    if len(d)<3: return beats
    m=np.median(d)
    for b in beats:
        if b[k] is not None and b[anchor] is not None:
            b[k]=rnd(alpha*b[k]+(1-alpha)*(b[anchor]+m))
    return beats

def feats(rec, i, k, kind):
    """k: boundary index 0..4 in F; rule col k+1"""
    b=rec["beats"][i]; rule=b[k+1]
    if rule is None: return None
    v=rec["F"][i,:,k]; v=v[~np.isnan(v)]
    if len(v)==0: return None
    v=np.sort(v)-rule
    if kind=="late": v=v[::-1]
    r=b[0]
    rrp = (b[0]-rec["beats"][i-1][0]) if i>0 else np.nan
    rrn = (rec["beats"][i+1][0]-b[0]) if i+1<len(rec["beats"]) else np.nan
    rr=np.nanmean([rrp,rrn]) if not (np.isnan(rrp) and np.isnan(rrn)) else 400
    x=[1.0, v[0], v[1] if len(v)>1 else v[0], v[2] if len(v)>2 else v[-1], np.median(v), v[-1], len(v)/12, (rule-r)/100, rr/500]
    return np.array(x)
def dataset(recs,k,kind,nf):
    X=[];Y=[]
    for rec in recs:
        ref=np.array(rec["reference"][k])
        if len(ref)==0: continue
        for i,b in enumerate(rec["beats"]):
            x=feats(rec,i,k,kind)
            if x is None: continue
            d=ref-b[k+1]; j=np.argmin(np.abs(d))
            if abs(d[j])>60: continue
            X.append(x[:nf]); Y.append(d[j])
    return np.array(X),np.array(Y)
def fit(X,Y,lam=1.0):
    I=np.eye(X.shape[1]); I[0,0]=0
    return np.linalg.solve(X.T@X+lam*I, X.T@Y)
def apply(recs,k,kind,w,nf):
    def c(rec):
        bs=shipped(rec)
        for i,b in enumerate(bs):
            x=feats(rec,i,k,kind)
            if x is None: continue
            b[k+1]=rnd(rec["beats"][i][k+1]+x[:nf]@w)
        return bs
    return c

def comb(off, k):
    def c(rec):
        bs=[list(b) for b in rec["beats"]]
        F=rec["F"].copy()
        if not rec["failed"]: F[:,:,k]+=off[None,:]
        for i,b in enumerate(bs):
            f=F[i]
            if np.isnan(f).all(): continue
            def g(j,late):
                v=f[:,j]; v=v[~np.isnan(v)]
                return None if len(v)==0 else int(round(v.max() if late else v.min()))
            if any(not np.isnan(F[i,:,j]).all() for j in range(5)) or True:
                b[3]=both(b[3],g(2,0),W["qrs_on"]); b[4]=both(b[4],g(3,1),W["qrs_off"])
                b[1]=both(b[1],g(0,0),W["p_on"]); b[2]=both(b[2],g(1,1),W["p_off"]); b[5]=both(b[5],g(4,1),W["t_off"])
        return bs
    return c
def sd(recs,off,k):
    e=evaluate(recs,comb(off,k))[k][0]; return np.std(e)

import os, re, glob
def load_any(d):
    out=[]
    for f in sorted(glob.glob(d+"/*.json")):
        j=json.load(open(f)); j["lab"]=[np.frombuffer(s.encode(),dtype=np.uint8)-48 for s in j["labels"]]; out.append(j)
    return out
def net_p(rec, beats, K, agree):
    """per beat: (on, off) from the net's P labels agreed by >= K leads, or None"""
    rows=usable_rows(rec); n=len(rows[0]) if rows else 0
    out=[]
    for i,b in enumerate(beats):
        q_on = b[3] if b[3] is not None else b[0]-25
        prev = beats[i-1][4] if i>0 and beats[i-1][4] is not None else (beats[i-1][0]+40 if i>0 else 0)
        cands=[]
        for lab in rows:
            segs=[s for s in segments(lab[prev:q_on] if q_on>prev else lab[0:0],1,10,5)]
            if segs: cands.append((segs[-1][0]+prev, segs[-1][1]+prev))
        if len(cands)<K: out.append(None); continue
        ons=np.array([c[0] for c in cands]); med=np.median(ons)
        ok=[c for c in cands if abs(c[0]-med)<=agree]
        if len(ok)<K or min(c[0] for c in ok)==0: out.append(None); continue
        out.append((min(c[0] for c in ok), max(c[1] for c in ok)))
    return out
def rescue(rec, beats, K=8, agree=20, frac=0.7, tol=20):
    """beats: after refine. If the rule-based found P in fewer than half the beats, take the
    net's agreed P waves when they cover >= frac of beats with consistent PR."""
    have=sum(1 for b in beats if b[1] is not None)
    if 2*have>=len(beats) or len(beats)<3: return beats
    npw=net_p(rec, beats, K, agree)
    prs=[b[3]-p[0] for b,p in zip(beats,npw) if p is not None and b[3] is not None]
    if len(prs)<frac*len(beats): return beats
    med=np.median(prs)
    cons=[abs(pr-med)<=tol for pr in prs]
    if sum(cons)<frac*len(beats): return beats
    out=[]
    for b,p in zip(beats,npw):
        b=list(b)
        if p is not None and b[3] is not None and abs(b[3]-p[0]-med)<=tol and b[1] is None:
            b[1],b[2]=p
        out.append(b)
    return out
def dx(path):
    m=re.search(r'#\s*Dx:\s*(.*)', open(path+'.hea').read()); return set(m.group(1).strip().split(',')) if m else set()

if __name__ == "__main__":
    import sys
    A = prep(load(sys.argv[1])); B = prep(load(sys.argv[2])); what = sys.argv[3]
    if what == "rescue":
        # combine.py A B rescue CINC_DIR K agree frac tol
        cdir = sys.argv[4]; K, agree, frac, tol = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
        res = {}
        for rec in load_any(cdir):
            codes = dx(rec["path"])
            nsr = bool(codes & {"426783006", "426177001", "427084000"}); af = bool(codes & {"164889003", "164890007"})
            grp = "sinus" if nsr and not af else ("af" if af and not nsr else None)
            if not grp:
                continue
            b0 = shipped(rec); b1 = rescue(rec, b0, K, agree, frac, tol)
            r = res.setdefault(grp, [0, 0, 0]); r[0] += 1
            r[1] += sum(x[1] is not None for x in b0) >= 2; r[2] += sum(x[1] is not None for x in b1) >= 2
        print("records, with P waves before, after:", res)
        print(report(evaluate(A + B, lambda rec: rescue(rec, shipped(rec), K, agree, frac, tol))).splitlines()[0])
    if what == "replay":
        print(report(evaluate(A + B, shipped)))
    elif what == "smooth":
        for a in [1, 0.75, 0.5, 0.25, 0]:
            def c(rec, a=a):
                b = shipped(rec)
                for k in (1, 2, 5):
                    b = med_smooth(b, k, 3, a)
                return b
            print("alpha", a); print(report(evaluate(A + B, c)))
    elif what == "stack":
        for k, kind in [(4, "late"), (0, "early"), (1, "late")]:
            for nf in [2, 3, 5, 6, 9]:
                XA, YA = dataset(A, k, kind, nf); XB, YB = dataset(B, k, kind, nf)
                wA = fit(XA, YA); wB = fit(XB, YB)
                t1 = evaluate(B, apply(B, k, kind, wA, nf)); t2 = evaluate(A, apply(A, k, kind, wB, nf))
                t = [[t1[j][0] + t2[j][0], t1[j][1] + t2[j][1], t1[j][2] + t2[j][2]] for j in range(5)]
                print(kind, "features", nf, report([t[k]], [("P on", "P off", "QRS on", "QRS off", "T off")[k]]))
    elif what == "offsets":
        for k in [4, 0]:
            for tr, te in [(A, B), (B, A)]:
                off = np.zeros(12)
                for _ in range(2):
                    for l in range(12):
                        best = (sd(tr, off, k), off[l])
                        for v in range(-12, 13, 3):
                            o = off.copy(); o[l] = v; s = sd(tr, o, k)
                            if s < best[0] - 1e-9:
                                best = (s, v)
                        off[l] = best[1]
                print(("P on", "", "", "", "T off")[k], "offsets", off, "other fold before", round(sd(te, np.zeros(12), k), 2), "after", round(sd(te, off, k), 2))
