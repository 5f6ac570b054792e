"""PyTorch port of the burn EKnet (trainer/src/model/{mod,embed,block,attention}.rs), stage 2 and
stage 1 with the seed's query heads (`stage=1`: 12 lead queries, each to its 1250 samples by one
shared Linear(D -> 1250), lead II's query through D -> 1250 -> 2500 -> 5000 for the 10 s strip).
Same parameter shapes, initialisations (PyTorch Linear default == burn LinearConfig default
KaimingUniform(gain 1/sqrt 3) i.e. U(+-1/sqrt(fan_in)) for weight and bias; queries and k_lead
N(0, 0.02); k_time 1-D sin-cos, learned; class heads U(+-1/sqrt(D)); LayerNorm eps 1e-5), same
token geometry, same residual post-norm block, same drop plan semantics (per sample, per group,
keep floor(n*(1-r)) random tokens, ascending). Optional knobs (all off by default = the burn model):
dropout (attention weights, projections, MLP), pre-norm."""
import math
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SLOT_LEAD_ROW = [0, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
SLOT_COL = [0, 0, 1, 2, 3, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
SLOT_GROUP = ["limb", "limb", "rhythm", "rhythm", "rhythm", "limb", "limb", "limb", "limb",
              "chest", "chest", "chest", "chest", "chest", "chest"]
P = 50  # patches per slot


def token_rows():
    return [SLOT_LEAD_ROW[s] for s in range(15) for _ in range(P)]


def token_cols():
    return [SLOT_COL[s] * P + p for s in range(15) for p in range(P)]


def group_tokens(g):
    return [s * P + p for s in range(15) if SLOT_GROUP[s] == g for p in range(P)]


def sincos_1d(positions, dim):
    out = np.zeros((len(positions), dim), np.float32)
    for a, p in enumerate(positions):
        for j in range(dim):
            i = j // 2
            ang = p / 10000.0 ** (2.0 * i / dim)
            out[a, j] = math.sin(ang) if j % 2 == 0 else math.cos(ang)
    return out


class Attention(nn.Module):
    def __init__(self, d, h, attn_drop=0.0):
        super().__init__()
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))
        self.h, self.attn_drop = h, attn_drop

    def forward(self, q, kv, want=False):
        b, lq, d = q.shape
        lk = kv.shape[1]
        h, dh = self.h, d // self.h
        qh = self.query(q).view(b, lq, h, dh).transpose(1, 2)
        kh = self.key(kv).view(b, lk, h, dh).transpose(1, 2)
        vh = self.value(kv).view(b, lk, h, dh).transpose(1, 2)
        if want:
            w = torch.softmax(qh @ kh.transpose(2, 3) / math.sqrt(dh), -1)
            ctx = w @ vh
            wm = w.mean(1)
        else:
            ctx = F.scaled_dot_product_attention(
                qh, kh, vh, dropout_p=self.attn_drop if self.training else 0.0)
            wm = None
        return self.output(ctx.transpose(1, 2).reshape(b, lq, d)), wm


class Block(nn.Module):
    def __init__(self, d, h, pre_norm=False, drop=0.0, attn_drop=0.0):
        super().__init__()
        self.attn = Attention(d, h, attn_drop)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.pre_norm = pre_norm
        self.drop = nn.Dropout(drop)

    def mlp(self, x):
        return self.fc2(self.drop(F.gelu(self.fc1(x))))

    def forward(self, x, kv=None, want=False):
        if self.pre_norm:
            xn = self.norm1(x)
            kv = xn if kv is None else kv
            a, w = self.attn(xn, kv, want)
            x = x + self.drop(a)
            x = x + self.drop(self.mlp(self.norm2(x)))
        else:
            kv = x if kv is None else kv
            a, w = self.attn(x, kv, want)
            x = x + self.drop(self.norm1(a))
            x = x + self.drop(self.norm2(self.mlp(x)))
        return x, w


class TokenEmbed(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.patch_embed = nn.Linear(25, d)
        self.k_lead = nn.Parameter(torch.randn(12, d) * 0.02)
        self.k_time = nn.Parameter(torch.from_numpy(sincos_1d(list(range(200)), d)))
        self.merge_fc1 = nn.Linear(3 * d, d)
        self.merge_fc2 = nn.Linear(d, d)
        self.register_buffer("rows", torch.tensor(token_rows()), persistent=False)
        self.register_buffer("cols", torch.tensor(token_cols()), persistent=False)

    def forward(self, x):
        b = x.shape[0]
        t = self.patch_embed(x.reshape(b, 750, 25))
        d = t.shape[2]
        lead = self.k_lead[self.rows].unsqueeze(0).expand(b, 750, d)
        time = self.k_time[self.cols].unsqueeze(0).expand(b, 750, d)
        return self.merge_fc2(F.gelu(self.merge_fc1(torch.cat([t, lead, time], 2))))


class EKnet(nn.Module):
    def __init__(self, d=64, depth=3, heads=4, kdepth=2, classes=6, lead_split=True,
                 pre_norm=False, drop=0.0, attn_drop=0.0, head_drop=0.0, stage=2):
        super().__init__()
        self.stage = stage
        if stage == 1:
            classes = 12
        blocks = lambda n: nn.ModuleList(Block(d, heads, pre_norm, drop, attn_drop) for _ in range(n))
        self.embed = TokenEmbed(d)
        self.encoder = blocks(depth)
        self.knowledge_self = blocks(kdepth)
        self.knowledge_cross = blocks(kdepth)
        self.queries = nn.Parameter(torch.randn(classes, d) * 0.02)
        bound = 1.0 / math.sqrt(d)
        if stage == 2:
            self.class_weight = nn.Parameter(torch.empty(classes, d, 2).uniform_(-bound, bound))
            self.class_bias = nn.Parameter(torch.empty(classes, 2).uniform_(-bound, bound))
        else:
            self.recon_slot = nn.Linear(d, 1250)
            self.recon_ii = nn.ModuleList([nn.Linear(d, 1250), nn.Linear(1250, 2500), nn.Linear(2500, 5000)])
        groups = ([group_tokens("limb"), group_tokens("chest"), group_tokens("rhythm")]
                  if lead_split else [list(range(750))])
        self.groups = groups
        for i, g in enumerate(groups):
            self.register_buffer(f"g{i}", torch.tensor(g), persistent=False)
        cat = [t for g in groups for t in g]
        unsplit = [0] * 750
        for pos, t in enumerate(cat):
            unsplit[t] = pos
        self.register_buffer("unsplit", torch.tensor(unsplit), persistent=False)
        self.head_drop = nn.Dropout(head_drop)

    def draw_plan(self, b, ratio, gen):
        """[group] -> LongTensor [b, k] of kept global token indices, ascending."""
        plan = []
        for i, g in enumerate(self.groups):
            gt = getattr(self, f"g{i}")
            n = len(g)
            k = int(math.floor(n * (1.0 - ratio)))
            perm = torch.rand(b, n, generator=gen).argsort(1)[:, :k]
            plan.append(gt[perm.sort(1).values])
        return plan

    def encode(self, tokens, plan):
        b, _, d = tokens.shape
        outs = []
        for i in range(len(self.groups)):
            if plan is not None:
                idx = plan[i]
                x = tokens.gather(1, idx.unsqueeze(2).expand(b, idx.shape[1], d))
            else:
                x = tokens.index_select(1, getattr(self, f"g{i}"))
            for blk in self.encoder:
                x = blk(x)[0]
            outs.append(x)
        cat = torch.cat(outs, 1)
        if plan is None and len(self.groups) > 1:
            cat = cat.index_select(1, self.unsplit)
        return cat

    def forward(self, x, plan=None, want_attn=False):
        b = x.shape[0]
        mem = self.encode(self.embed(x), plan)
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        attn = None
        last = len(self.knowledge_cross) - 1
        for i, (sa, ca) in enumerate(zip(self.knowledge_self, self.knowledge_cross)):
            q = sa(q)[0]
            want = want_attn and i == last
            q, w = ca(q, mem, want)
            if want:
                attn = w
        if self.stage == 1:
            return self.reconstruct(q), attn
        q = self.head_drop(q)
        logits = torch.einsum("bkd,kdc->bkc", q, self.class_weight) + self.class_bias.unsqueeze(0)
        return logits, attn


    def reconstruct(self, q):
        """[b, 12, D] lead queries to [b, 15, 1250] in slot order (I, II_1..II_4, III, ..., V6)."""
        b = q.shape[0]
        per_lead = self.recon_slot(q)
        h = q[:, 1]
        for i, layer in enumerate(self.recon_ii):
            h = layer(h)
            if i + 1 < len(self.recon_ii):
                h = F.gelu(h)
        return torch.cat([per_lead[:, 0:1], h.view(b, 4, 1250), per_lead[:, 2:]], 1)


def scores(logits):
    return torch.softmax(logits, 2)[:, :, 1]
