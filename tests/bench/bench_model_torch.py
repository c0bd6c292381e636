"""PyTorch twin of bench_model's workload, for the speed comparison: the same
model (tests/python/gtrt_torch_model.py, float32), the same batch shape, a
training step (forward, backward, AdamW) written the efficient PyTorch way
(one padded-free batched tensor, since all sequences have the same length)
and a batched top-k sampling loop with a preallocated KV cache. Prints one
line "train_tok_s=X sample_tok_s=Y"; run by bench_model."""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from gtrt_torch_model import Policy  # noqa: E402

PRESETS = {
    "tiny": dict(d_model=32, n_layer=2, n_head=2, max_seq=192, value_h1=32, value_h2=16),
    "small": dict(d_model=256, n_layer=4, n_head=4, max_seq=256, value_h1=256, value_h2=128),
    "base": dict(d_model=512, n_layer=8, n_head=8, max_seq=320, value_h1=512, value_h2=256),
}


def embed(model, imgs, tokens, pos0=0):
    cfg = model.cfg
    parts = []
    if imgs is not None:
        B, C, H, W = imgs.shape
        P = cfg["patch"]
        p = imgs.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
        p = p.reshape(B, model.n_patches, C * P * P)
        parts.append(model.patch_embed(p) + model.patch_pos)
    T = tokens.shape[1]
    parts.append(model.tok_embed(tokens) + model.pos_embed.weight[pos0:pos0 + T])
    return torch.cat(parts, dim=1)


def attn_batched(blk, x, cache=None, pos=0):
    """x [B, T, d]; with a cache (k, v [B, H, max, hs]) the new keys land at
    pos.. and the queries attend to everything up to themselves."""
    B, T, d = x.shape
    H = blk.attn.n_head
    hs = d // H
    q, k, v = blk.attn.qkv(blk.ln1(x)).split(d, dim=2)
    q = q.view(B, T, H, hs).transpose(1, 2)
    k = k.view(B, T, H, hs).transpose(1, 2)
    v = v.view(B, T, H, hs).transpose(1, 2)
    if cache is not None:
        cache[0][:, :, pos:pos + T] = k
        cache[1][:, :, pos:pos + T] = v
        k = cache[0][:, :, :pos + T]
        v = cache[1][:, :, :pos + T]
    att = (q @ k.transpose(-1, -2)) / (hs ** 0.5)
    if T > 1:
        S = k.shape[2]
        mask = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)
        att = att.masked_fill(mask, float("-inf"))
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
    x = x + blk.attn.proj(y)
    return x + blk.mlp(blk.ln2(x))


def train_step(model, opt, imgs, tokens, n_prompt, temperature):
    x = embed(model, imgs, tokens)
    for blk in model.blocks:
        x = attn_batched(blk, x)
    h = model.ln_f(x)
    first = model.n_patches + n_prompt - 1
    rows = h[:, first:-1]
    logits = rows @ model.tok_embed.weight.t()
    logp = F.log_softmax(logits / temperature, dim=-1)
    lp = logp.gather(2, tokens[:, n_prompt:, None]).squeeze(2)
    ent = -(logp.exp() * logp).sum(-1)
    value = model.value_head(h[:, first])
    loss = -lp.mean() - 0.01 * ent.mean() + 0.1 * value.sum()
    opt.zero_grad(set_to_none=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


@torch.no_grad()
def sample(model, imgs, prompt, n_new, top_k, temperature):
    B = prompt.shape[0]
    d = model.cfg["d_model"]
    H = model.cfg["n_head"]
    T0 = model.n_patches + prompt.shape[1]
    caches = [(torch.empty(B, H, T0 + n_new, d // H), torch.empty(B, H, T0 + n_new, d // H))
              for _ in model.blocks]
    x = embed(model, imgs, prompt)
    for blk, c in zip(model.blocks, caches):
        x = attn_batched(blk, x, c, 0)
    h = model.ln_f(x[:, -1:])
    model.value_head(h[:, 0])
    pos, tpos = T0, prompt.shape[1]
    out = []
    for _ in range(n_new):
        logits = (h[:, 0] @ model.tok_embed.weight.t()) / temperature
        logp = F.log_softmax(logits, -1)
        top, idx = logits.topk(top_k, dim=-1)
        choice = torch.multinomial(top.softmax(-1), 1)
        tok = idx.gather(1, choice)
        logp.gather(1, tok)
        out.append(tok)
        if len(out) == n_new:
            break
        x = embed(model, None, tok, tpos)
        for blk, c in zip(model.blocks, caches):
            x = attn_batched(blk, x, c, pos)
        h = model.ln_f(x)
        pos += 1
        tpos += 1
    return torch.cat(out, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=40)
    ap.add_argument("--answer", type=int, default=60)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(vocab_size=256, patch=8, image_c=3, image_h=32, image_w=64, **PRESETS[a.preset])
    model = Policy(cfg).float()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    imgs = torch.rand(a.batch, 3, 32, 64)
    tokens = torch.randint(0, 256, (a.batch, a.prompt + a.answer))
    n_tok = a.batch * (model.n_patches + a.prompt + a.answer)

    # Best of several runs, like bench_model (robust on a shared machine).
    train_step(model, opt, imgs, tokens, a.prompt, 0.2)
    t, steps, best = 0.0, 0, 1e30
    while steps < 3 or t < a.seconds:
        t0 = time.perf_counter()
        train_step(model, opt, imgs, tokens, a.prompt, 0.2)
        dt = time.perf_counter() - t0
        t, steps, best = t + dt, steps + 1, min(best, dt)
    train = n_tok / best

    prompt = tokens[:, :a.prompt]
    sample(model, imgs, prompt, a.new, 5, 1.0)
    t, runs, best = 0.0, 0, 1e30
    while runs < 2 or t < a.seconds:
        t0 = time.perf_counter()
        sample(model, imgs, prompt, a.new, 5, 1.0)
        dt = time.perf_counter() - t0
        t, runs, best = t + dt, runs + 1, min(best, dt)
    samp = a.batch * a.new / best
    print("train_tok_s=%.1f sample_tok_s=%.1f" % (train, samp))


if __name__ == "__main__":
    main()
