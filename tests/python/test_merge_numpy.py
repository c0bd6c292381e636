"""Independent NumPy check of `gtrt merge` (teacher/merge.c).

The merge rules are restated here from their specification (teacher/merge.h)
with NumPy only: SMA and EMA weights over an incremental merge whose previous
teacher is one of the inputs, linear averaging, and TIES (trim each task
vector to the top `density` fraction by magnitude with exact-k ties broken by
lowest index via a stable sort, elect signs by the weighted sum in double,
weighted disjoint mean in float32 (in double when the weights are more than
2^60 apart), lambda, back onto the base). That one merge's float32 mean
stays within the tolerance of an all-double one is checked here too. Random tensors of several shapes,
some with many exact ties, are written as safetensors files by this script
(8-byte little-endian header length, JSON header, raw bytes); the real
`$GTRT_BUILD_DIR/gtrt merge` merges them for every method and combination,
and its output must agree within 1e-6 (max abs difference). When the build
has tests/tool_model_dump, a real model checkpoint is used as a base too.
A checkpoint of another architecture must be refused with nothing written.
Exits nonzero on any mismatch."""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

TOL = 1e-6
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


# ==== safetensors, written and read here ====

def st_write(path, tensors, meta=None, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        raw = np.asarray(arr, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=np.dtype(DTYPES[t["dtype"]]).newbyteorder("<"))
        out[name] = arr.astype(np.float32).reshape(t["shape"])
    return out, meta


# ==== the merge, restated ====

def keep_count(n, density):
    k = int(math.floor(density * n + 0.5))
    k = max(0, min(k, n))
    if k == 0 and density > 0 and n > 0:
        k = 1
    return k


def trim(tau, density):
    flat = tau.ravel()
    k = keep_count(flat.size, density)
    order = np.argsort(-np.abs(flat), kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return np.where(mask, flat, np.float32(0)).reshape(tau.shape)


def mean_f64(b, taus, act, s, lam):
    """The disjoint mean in double, rounded once onto the base."""
    num, den = np.zeros(b.shape), np.zeros(b.shape)
    for t, (_, w) in zip(taus, act):
        agree = (t != 0) & ((t > 0) == (s >= 0))
        num = num + np.where(agree, w * t, 0.0)
        den = den + np.where(agree, w, 0.0)
    safe = np.where(den > 0, den, 1.0)
    merged = np.where(den > 0, b.astype(np.float64) + lam * (num / safe), b.astype(np.float64))
    return merged.astype(np.float32)


def mean_f32(b, taus, act, s, lam):
    """The disjoint mean in float32: weights scaled by the power of two that
    puts the largest in [1, 2), sums in input order, the mean added to the
    base times float32(lambda), every operation rounded to float32."""
    e = math.frexp(max(w for _, w in act))[1] - 1
    num, den = np.zeros(b.shape, np.float32), np.zeros(b.shape, np.float32)
    for t, (_, w) in zip(taus, act):
        t32 = t.astype(np.float32)
        wf = np.float32(math.ldexp(w, -e))
        agree = (t32 != 0) & ((t32 > 0) == (s >= 0))
        num = np.where(agree, num + wf * t32, num)
        den = np.where(agree, den + wf, den)
    safe = np.where(den > 0, den, np.float32(1))
    return (b + np.float32(lam) * (num / safe)).astype(np.float32)


def ties(base, inputs, weights, density, lam, mean=None):
    act = [(x, w) for x, w in zip(inputs, weights) if w > 0]
    ws = [w for _, w in act]
    if mean is None:
        # float32 unless some weight is below 2^-60 of the largest
        mean = mean_f64 if min(ws) < max(ws) * 2.0 ** -60 else mean_f32
    out = {}
    for name, b in base.items():
        taus = [trim((x[name] - b).astype(np.float32), density).astype(np.float64) for x, _ in act]
        s = np.zeros(b.shape)
        for t, (_, w) in zip(taus, act):
            s = s + w * t
        out[name] = mean(b, taus, act, s, lam)
    return out


def linear(base, inputs, weights):
    act = [(x, w) for x, w in zip(inputs, weights) if w > 0]
    total = sum(w for _, w in act)
    out = {}
    for name in base:
        acc = np.zeros(base[name].shape)
        for x, w in act:
            acc = acc + (w / total) * x[name].astype(np.float64)
        out[name] = acc.astype(np.float32)
    return out


def weights(method, n_merged, k, alpha):
    if method == "sma":
        return [float(n_merged)] + [1.0] * k
    w, tail = [0.0] * (k + 1), 1.0
    for i in range(k, 0, -1):
        w[i] = alpha * tail
        tail *= 1.0 - alpha
    w[0] = tail
    return w


def incremental(base, ckpts, method, combine, alpha, density, lam, interval):
    teacher, n, pending = dict(base), 0, []
    for i, c in enumerate(ckpts):
        pending.append(c)
        if len(pending) >= interval or i == len(ckpts) - 1:
            w = weights(method, n, len(pending), alpha)
            inputs = [teacher] + pending
            teacher = (ties(base, inputs, w, density, lam) if combine == "ties"
                       else linear(base, inputs, w))
            n += len(pending)
            pending = []
    return teacher


# ==== data ====

SHAPES = {
    "tok_emb.weight": (97, 48),
    "blocks.0.attn.qkv.weight": (48, 144),
    "blocks.0.attn.qkv.bias": (144,),
    "blocks.0.mlp.fc.weight": (3, 5, 7),
    "grid.weight": (40, 25),      # values on a coarse grid: many exact ties
    "sparse.weight": (300,),      # mostly equal to the base: ties at zero
    "value_head.out.bias": (1,),
    "blocks.1.mlp.fc.weight": (280, 256),  # 64 Ki entries and more: sampled bracket
}


def make_data(rng, n_ckpt):
    base = {k: (0.05 * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}
    base["grid.weight"] = (rng.integers(-8, 9, SHAPES["grid.weight"]) / 8.0).astype(np.float32)
    ckpts, cur = [], base
    for _ in range(n_ckpt):
        nxt = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in cur.items()}
        nxt["grid.weight"] = (base["grid.weight"] + rng.integers(-3, 4, SHAPES["grid.weight"]) / 8.0).astype(np.float32)
        sp = base["sparse.weight"].copy()
        hit = rng.random(sp.shape) < 0.15
        sp[hit] += (0.02 * rng.standard_normal(int(hit.sum()))).astype(np.float32)
        nxt["sparse.weight"] = sp
        ckpts.append(nxt)
        cur = nxt
    return base, ckpts


# ==== running gtrt ====

def gtrt_merge(gtrt, files, out, args):
    cmd = [gtrt, "merge", *files, "-o", out, *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def compare(label, got, want, failures):
    worst = 0.0
    if set(got) != set(want):
        failures.append("%s: tensor names differ: %s" % (label, sorted(set(got) ^ set(want))))
        return
    for name in want:
        if got[name].shape != want[name].shape:
            failures.append("%s: %s has shape %s, want %s" % (label, name, got[name].shape, want[name].shape))
            continue
        d = float(np.max(np.abs(got[name].astype(np.float64) - want[name].astype(np.float64))))
        worst = max(worst, d)
        if not d <= TOL:
            failures.append("%s: %s differs by %.3g" % (label, name, d))
    print("%-60s max |gtrt - numpy| = %.3g" % (label, worst))


CASES = [
    # method, combine, alpha, density, lambda, interval
    ("sma", "linear", 0.5, 0.8, 1.0, 1),
    ("ema", "linear", 0.5, 0.8, 1.0, 1),
    ("sma", "ties", 0.5, 0.8, 1.0, 1),
    ("ema", "ties", 0.5, 0.8, 1.0, 1),
    ("ema", "ties", 0.3, 0.5, 1.3, 2),
    ("sma", "ties", 0.5, 0.25, 0.7, 3),
    ("ema", "linear", 0.2, 0.8, 1.0, 2),
    ("sma", "ties", 0.5, 1.0, 1.0, 1),
    ("ema", "ties", 1.0, 0.8, 1.0, 1),
    # the teacher weighs (1e-4)^5, below 2^-60 of the newest: the double mean
    ("ema", "ties", 0.9999, 0.8, 1.0, 5),
]


def check_f32_mean(base, ckpts, failures):
    """One merge, explicit inputs: the float32 mean against the double one."""
    worst = 0.0
    for ws in ([3.0, 1.0], [0.7, 0.3], [1.0, 1.0, 1.0], [0.125, 0.375, 0.5], [5.0, 1.0, 1.0, 1.0]):
        inputs = ckpts[:len(ws)]
        for density in (0.8, 0.25, 1.0):
            a = ties(base, inputs, ws, density, 1.3, mean_f32)
            b = ties(base, inputs, ws, density, 1.3, mean_f64)
            for name in a:
                worst = max(worst, float(np.max(np.abs(a[name].astype(np.float64) - b[name]))))
    print("%-60s max |float32 - double| = %.3g" % ("one merge, float32 mean vs double mean", worst))
    if not worst <= TOL:
        failures.append("float32 mean differs from the double mean by %.3g" % worst)


def run_cases(gtrt, tmp, tag, base, ckpts, meta, failures):
    bpath = os.path.join(tmp, tag + "_base.safetensors")
    st_write(bpath, base, meta)
    files = []
    for i, c in enumerate(ckpts):
        p = os.path.join(tmp, "%s_ckpt%d.safetensors" % (tag, i))
        # one checkpoint stored as F64: gtrt reads any float dtype as float32
        st_write(p, c, None, "F64" if i == 1 else "F32")
        c.update({k: v.astype(np.float64).astype(np.float32) for k, v in c.items()})
        files.append(p)
    for method, combine, alpha, density, lam, interval in CASES:
        out = os.path.join(tmp, "%s_%s_%s.safetensors" % (tag, method, combine))
        args = ["--method", method, "--combine", combine, "--alpha", repr(alpha),
                "--density", repr(density), "--lambda", repr(lam), "--interval", str(interval)]
        r = gtrt_merge(gtrt, [bpath] + files, out, args)
        label = "%s %s/%s a=%g d=%g l=%g every %d" % (tag, method, combine, alpha, density, lam, interval)
        if r.returncode != 0:
            failures.append("%s: gtrt merge exited %d: %s" % (label, r.returncode, r.stderr.strip()))
            continue
        got, gmeta = st_read(out)
        want = incremental(base, ckpts, method, combine, alpha, density, lam, interval)
        compare(label, got, want, failures)
        for k, v in (meta or {}).items():
            if gmeta.get(k) != v:
                failures.append("%s: metadata %s = %r, want %r (copied from the base)" % (label, k, gmeta.get(k), v))
        if gmeta.get("merge_method") != method or gmeta.get("merge_combine") != combine \
                or gmeta.get("merge_count") != str(len(ckpts)):
            failures.append("%s: provenance metadata wrong: %r" % (label, gmeta))
        os.unlink(out)


def check_refusal(gtrt, tmp, base, ckpt, failures):
    bpath = os.path.join(tmp, "r_base.safetensors")
    st_write(bpath, base, {"format": "x"})
    bad = dict(ckpt)
    bad["blocks.0.attn.qkv.bias"] = np.zeros(145, np.float32)
    good_p, bad_p = os.path.join(tmp, "r_good.safetensors"), os.path.join(tmp, "r_bad.safetensors")
    st_write(good_p, ckpt)
    st_write(bad_p, bad)
    out = os.path.join(tmp, "r_out.safetensors")
    r = gtrt_merge(gtrt, [bpath, good_p, bad_p], out, ["--method", "sma", "--combine", "ties"])
    if r.returncode == 0 or "different architecture" not in r.stderr or os.path.exists(out):
        failures.append("refusal: exit %d, stderr %r, output written %s" % (r.returncode, r.stderr, os.path.exists(out)))
    else:
        print("another architecture refused:", r.stderr.strip())


def real_checkpoint_case(build, gtrt, tmp, rng, failures):
    tool = os.path.join(build, "tests", "tool_model_dump")
    if not os.path.exists(tool):
        print("no tests/tool_model_dump in this build: real-checkpoint case skipped")
        return
    d = os.path.join(tmp, "real")
    os.mkdir(d)
    r = subprocess.run([tool, d, "tiny"], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("tool_model_dump failed: %s" % r.stderr.strip())
        return
    base, meta = st_read(os.path.join(d, "model.safetensors"))
    ckpts, cur = [], base
    for _ in range(3):
        cur = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in cur.items()}
        ckpts.append(cur)
    run_cases(gtrt, tmp, "real", base, ckpts, meta, failures)


def main():
    build = os.environ.get("GTRT_BUILD_DIR")
    if not build:
        print("GTRT_BUILD_DIR is not set", file=sys.stderr)
        return 2
    gtrt = os.path.join(build, "gtrt")
    rng = np.random.default_rng(20251213)
    failures = []
    with tempfile.TemporaryDirectory(prefix="gtrt_merge_") as tmp:
        base, ckpts = make_data(rng, 5)
        meta = {"format": "gtrt-model-1", "n_head": "4", "note": "random"}
        run_cases(gtrt, tmp, "random", base, ckpts, meta, failures)
        check_f32_mean(base, ckpts, failures)
        check_refusal(gtrt, tmp, base, ckpts[0], failures)
        real_checkpoint_case(build, gtrt, tmp, rng, failures)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("gtrt merge agrees with NumPy within %.0e in every case" % TOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
