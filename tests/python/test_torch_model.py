"""Cross-check of the C policy model against PyTorch.

tool_model_dump (C) writes a checkpoint, a batch of sequences of different
lengths (image + prompt + response, text only, prompt only) and its own
logits, logprobs, entropies, values, the test loss and every parameter
gradient. This script loads the very same checkpoint into an independent
PyTorch implementation (float64), runs the same batch and loss, and
requires relative error <= 1e-4 on every output and every gradient
(max |c - torch| / max |torch| per tensor). Exits nonzero on any mismatch."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gtrt_torch_model import Policy, config_from_meta, read_safetensors  # noqa: E402

TOL = 1e-4


def main():
    build = os.environ.get("GTRT_BUILD_DIR")
    if not build:
        print("GTRT_BUILD_DIR is not set", file=sys.stderr)
        return 2
    tool = os.path.join(build, "tests", "tool_model_dump")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    failures = []
    presets = sys.argv[1:] or ["tiny", "small"]
    with tempfile.TemporaryDirectory(prefix="gtrt_torch_") as tmp:
        for preset in presets:
            out = subprocess.run([tool, tmp, preset], capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stdout, out.stderr, file=sys.stderr)
                return 1
            print(out.stdout.strip())
            failures += check(tmp, preset)
    if failures:
        print("FAILED:", ", ".join(failures), file=sys.stderr)
        return 1
    print("all outputs and gradients agree within %.0e" % TOL)
    return 0


def check(tmp, preset):
    params, meta = read_safetensors(os.path.join(tmp, "model.safetensors"))
    batch, bmeta = read_safetensors(os.path.join(tmp, "batch.safetensors"))
    ref, _ = read_safetensors(os.path.join(tmp, "out.safetensors"))
    cfg = config_from_meta(meta)

    model = Policy(cfg).double()
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}
    model.load_state_dict(state, strict=True)  # names and shapes must match exactly

    temperature = float(bmeta["temperature"])
    images = torch.from_numpy(batch["images"].astype(np.float64))
    tokens = torch.from_numpy(batch["tokens"].astype(np.int64))
    seqs = []
    for img_idx, n_tok, n_prompt, off in batch["seqs"].tolist():
        img = images[img_idx] if img_idx >= 0 else None
        seqs.append((img, tokens[off:off + n_tok], n_prompt))

    logits, logprob, entropy, value = model(seqs, temperature)
    coef = {k: torch.from_numpy(batch["coef." + k].astype(np.float64))
            for k in ("logprob", "entropy", "logits", "value")}
    loss = ((coef["logprob"] * logprob).sum() + (coef["entropy"] * entropy).sum()
            + (coef["logits"] * logits).sum() + (coef["value"] * value).sum())
    model.zero_grad()
    loss.backward()

    failures = []
    worst = {}

    def compare(name, mine, theirs):
        theirs = theirs.detach().numpy()
        mine = mine.astype(np.float64)
        if mine.shape != theirs.shape:
            failures.append("%s shape %s vs %s" % (name, mine.shape, theirs.shape))
            return
        scale = np.abs(theirs).max()
        err = np.abs(mine - theirs).max() / (scale if scale > 0 else 1.0)
        worst[name] = err
        if not np.isfinite(err) or err > TOL or (scale == 0 and name.startswith("grad.")):
            failures.append("%s/%s (rel err %.2e, max %.2e)" % (preset, name, err, scale))

    compare("logits", ref["logits"], logits)
    compare("logprob", ref["logprob"], logprob)
    compare("entropy", ref["entropy"], entropy)
    compare("value", ref["value"], value)
    compare("loss", ref["loss"], loss.reshape(1))
    for name, p in model.named_parameters():
        compare("grad." + name, ref["grad." + name], p.grad)

    outs = ["logits", "logprob", "entropy", "value", "loss"]
    print("%s: outputs  " % preset + "  ".join("%s %.1e" % (k, worst[k]) for k in outs))
    grads = sorted(((v, k) for k, v in worst.items() if k.startswith("grad.")), reverse=True)
    print("%s: %d gradients, worst rel err %.2e (%s), median %.2e" % (
        preset, len(grads), grads[0][0], grads[0][1][5:], grads[len(grads) // 2][0]))
    return failures


if __name__ == "__main__":
    sys.exit(main())
