"""The gtrt policy model (common/model.h) rebuilt in PyTorch, independently of
the C code, plus a minimal safetensors reader (8-byte little-endian header
length + JSON header + raw bytes), so that the C model can be checked
against PyTorch on the very files it writes. Used by test_torch_model.py and
by tests/bench/bench_model_torch.py."""
import json
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
           "F16": np.float16, "U8": np.uint8}


def read_safetensors(path):
    """Return (tensors: dict name -> numpy array, metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + hlen:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out, meta


def config_from_meta(meta):
    keys = ["vocab_size", "d_model", "n_layer", "n_head", "patch", "image_c", "image_h",
            "image_w", "max_seq", "value_h1", "value_h2"]
    return {k: int(meta[k]) for k in keys}


class Attention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):  # x: [T, d], one sequence
        T, d = x.shape
        hs = d // self.n_head
        q, k, v = self.qkv(x).split(d, dim=1)
        q = q.view(T, self.n_head, hs).transpose(0, 1)
        k = k.view(T, self.n_head, hs).transpose(0, 1)
        v = v.view(T, self.n_head, hs).transpose(0, 1)
        att = (q @ k.transpose(1, 2)) / (hs ** 0.5)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, d)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, n_head)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ValueHead(nn.Module):
    def __init__(self, d, h1, h2):
        super().__init__()
        self.fc1 = nn.Linear(d, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.out = nn.Linear(h2, 1)

    def forward(self, h):
        h = F.gelu(self.fc1(h), approximate="tanh")
        h = F.gelu(self.fc2(h), approximate="tanh")
        return self.out(h).squeeze(-1)


class Policy(nn.Module):
    """Fuyu-style decoder: [image patches][text tokens], tied LM head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, P, C = cfg["d_model"], cfg["patch"], cfg["image_c"]
        self.n_patches = (cfg["image_h"] // P) * (cfg["image_w"] // P)
        self.patch_embed = nn.Linear(C * P * P, d)
        self.patch_pos = nn.Parameter(torch.zeros(self.n_patches, d))
        self.tok_embed = nn.Embedding(cfg["vocab_size"], d)
        self.pos_embed = nn.Embedding(cfg["max_seq"] - self.n_patches, d)
        self.blocks = nn.ModuleList([Block(d, cfg["n_head"]) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(d)
        self.value_head = ValueHead(d, cfg["value_h1"], cfg["value_h2"])

    def patches(self, img):  # [C, H, W] -> [n_patches, C*P*P], raster order
        C, H, W = img.shape
        P = self.cfg["patch"]
        x = img.reshape(C, H // P, P, W // P, P).permute(1, 3, 0, 2, 4)
        return x.reshape(self.n_patches, C * P * P)

    def hidden(self, img, tokens):
        """Final hidden states (after ln_f) of one sequence."""
        parts = []
        if img is not None:
            parts.append(self.patch_embed(self.patches(img)) + self.patch_pos)
        pos = torch.arange(len(tokens))
        parts.append(self.tok_embed(tokens) + self.pos_embed(pos))
        x = torch.cat(parts, dim=0)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x)

    def forward(self, seqs, temperature):
        """seqs: list of (image or None, token LongTensor, n_prompt).
        Returns logits [R, V], logprob [R], entropy [R], value [B] with the
        response tokens of all sequences concatenated, as in the C model."""
        logits, targets, values = [], [], []
        for img, tokens, n_prompt in seqs:
            h = self.hidden(img, tokens)
            n_img = 0 if img is None else self.n_patches
            last_prompt = n_img + n_prompt - 1
            values.append(self.value_head(h[last_prompt]))
            rows = h[last_prompt:n_img + len(tokens) - 1]
            logits.append(rows @ self.tok_embed.weight.t())
            targets.append(tokens[n_prompt:])
        logits = torch.cat(logits, dim=0)
        targets = torch.cat(targets, dim=0)
        logp_all = F.log_softmax(logits / temperature, dim=-1)
        logprob = logp_all.gather(1, targets[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logits, logprob, entropy, torch.stack(values)
