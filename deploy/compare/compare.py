#!/usr/bin/python3
"""Compare gtrt's training modes the way GTR-Turbo's paper does.

From ONE warm-start checkpoint (gtrt sft with the config's [sft] section,
made once and reused), run `gtrt up` once per (mode, seed) with the same
env-step budget, then measure every final policy on the same seeded eval
deals, and the merged teacher against the policy along the run (the
paper's premise: merging past checkpoints gives a stronger policy than the
current one). Writes into OUT:

  warm.safetensors           the shared warm start (and warm.json, its eval)
  MODE-sSEED/                each run's directory (metrics.jsonl, checkpoints)
  MODE-sSEED.log             gtrt up's output
  results.json, results.md   the table: final success +- 95 % CI, return,
                             format-valid rate, wall-clock, guidance time share
  curves-seedS.svg           gtrt plot of every mode for seed S
  teacher-vs-policy.md       success of policy vN and of the teacher merged
                             from v1..vN (gtrt merge, as the teacher service
                             merges) at a few versions along each run

Usage:
  deploy/compare/compare.py --config deploy/configs/compare-ezpoints.ini \\
      --out runs/compare-ezpoints [--modes ppo,gtr,turbo-sft,turbo-kl] \\
      [--seeds 1,2,3] [--gtrt build/gtrt] [--eval-episodes 200] \\
      [--teacher-points 4] [--teacher-episodes 100]

Runs are skipped when their directory already has a final checkpoint, so an
interrupted comparison continues where it stopped. Only the Python
standard library is used.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

MODES = ["ppo", "gtr", "turbo-sft", "turbo-kl"]


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def run(cmd, out_path=None):
    """Run cmd; its output goes to out_path (or is returned). Raise on failure."""
    if out_path:
        with open(out_path, "w") as f:
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if rc != 0:
            sys.exit("failed (exit %d): %s\n  see %s" % (rc, " ".join(cmd), out_path))
        return None
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("failed (exit %d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    return p.stdout


def eval_json(args, ckpt, episodes, seed):
    out = run([args.gtrt, "eval", ckpt, "--episodes", str(episodes), "--seed", str(seed),
               "--json", "--log-level", "warn"])
    return json.loads(out)


def checkpoints(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(d):
        return []
    vs = [int(f[len("policy-v"):-len(".safetensors")]) for f in os.listdir(d)
          if f.startswith("policy-v") and f.endswith(".safetensors")]
    return sorted(vs)


def ckpt_path(run_dir, v):
    return os.path.join(run_dir, "checkpoints", "policy-v%06d.safetensors" % v)


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def config_value(args, section, key):
    """The effective value of section.key, from `gtrt config` (INI out)."""
    cur = None
    for line in run([args.gtrt, "config", "--config", args.config]).splitlines():
        line = line.split(";")[0].strip()
        if line.startswith("["):
            cur = line.strip("[]")
        elif cur == section and "=" in line and line.split("=")[0].strip() == key:
            return line.split("=", 1)[1].strip()
    sys.exit("%s.%s not in gtrt config's output" % (section, key))


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def warm_start(args):
    warm = os.path.join(args.out, "warm.safetensors")
    if not os.path.exists(warm):
        log("warm start: gtrt sft (config [sft])")
        run([args.gtrt, "sft", "--config", args.config, "--set", "sft.eval_episodes=0",
             "-o", warm], os.path.join(args.out, "warm.log"))
    res = eval_json(args, warm, args.eval_episodes, args.eval_seed)
    with open(os.path.join(args.out, "warm.json"), "w") as f:
        json.dump(res, f, indent=1)
    log("warm start: success %.1f %% on %d eval episodes" % (100 * res["success_rate"],
                                                           res["episodes"]))
    return warm, res


def train(args, warm, mode, seed, updates):
    name = "%s-s%d" % (mode, seed)
    run_dir = os.path.join(args.out, name)
    wall_path = os.path.join(args.out, name + ".wall")
    if updates in checkpoints(run_dir) and os.path.exists(wall_path):
        log("%s: done before, kept" % name)
        with open(wall_path) as f:
            return run_dir, float(f.read())
    if os.path.isdir(run_dir):
        subprocess.call(["rm", "-rf", run_dir])
    teachers = "1" if mode.startswith("turbo") else "0"
    log("%s: gtrt up (%d updates, %s teacher)" % (name, updates, teachers))
    t0 = time.time()
    run([args.gtrt, "up", "--config", args.config, "--set", "run.mode=" + mode,
         "--set", "run.seed=%d" % seed, "--set", "run.name=" + name,
         "--set", "run.out_dir=" + args.out, "--set", "ppo.init_checkpoint=" + warm,
         "--set", "up.teachers=" + teachers, "--set", "up.eval_episodes=0",
         "--set", "ppo.keep_checkpoints=1000000"],
        os.path.join(args.out, name + ".log"))
    wall = time.time() - t0
    with open(wall_path, "w") as f:
        f.write("%.1f" % wall)
    return run_dir, wall


def summarise_run(args, mode, seed, run_dir, wall, updates):
    final = eval_json(args, ckpt_path(run_dir, updates), args.eval_episodes, args.eval_seed)
    ms = metrics(run_dir)
    share = [m["guide/time_share"] for m in ms if "guide/time_share" in m]
    failed = [m["guide/teacher_failed_share"] for m in ms if "guide/teacher_failed_share" in m]
    kl = [m["train/teacher_kl"] for m in ms if "train/teacher_kl" in m]
    lag = [m["guide/teacher_version_lag"] for m in ms if "guide/teacher_version_lag" in m]
    return {
        "mode": mode, "seed": seed, "updates": updates,
        "env_steps": ms[-1]["env_steps"] if ms and "env_steps" in ms[-1] else None,
        "success": final["success_rate"], "ci_low": final["success_ci_low"],
        "ci_high": final["success_ci_high"], "return": final["mean_return"],
        "env_return": final["mean_env_return"], "format_valid": final["format_valid"],
        "wall_s": wall, "guide_time_share": mean(share), "teacher_failed_share": mean(failed),
        "teacher_kl_mean": mean(kl), "teacher_lag_mean": mean(lag),
        "train_success_last10": mean([m["train/success_rate"] for m in ms[-10:]]),
    }


def teacher_vs_policy(args, warm, run_dir, updates):
    """Success of policy vN and of the teacher merged from v1..vN at a few N."""
    k = max(1, args.teacher_points)
    points = sorted({max(1, round(updates * (i + 1) / k)) for i in range(k)})
    rows = []
    merged = os.path.join(run_dir, "teacher-merged.safetensors")
    for n in points:
        cks = [ckpt_path(run_dir, v) for v in range(1, n + 1)]
        run([args.gtrt, "merge", warm] + cks + ["-o", merged, "--config", args.config,
                                               "--log-level", "warn"])
        pol = eval_json(args, ckpt_path(run_dir, n), args.teacher_episodes, args.eval_seed)
        tea = eval_json(args, merged, args.teacher_episodes, args.eval_seed)
        rows.append({"version": n, "policy": pol["success_rate"], "teacher": tea["success_rate"],
                     "policy_valid": pol["format_valid"], "teacher_valid": tea["format_valid"]})
    os.remove(merged)
    return rows


def fmt_pct(x):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else "%.1f" % (100 * x)


def write_table(args, warm_res, results, tvp):
    by_mode = {m: [r for r in results if r["mode"] == m] for m in args.modes}
    lines = ["| mode | seeds | final success % (95 % CI per seed) | mean | return | "
             "format-valid % | wall-clock s | guidance time share % |",
             "|---|---|---|---|---|---|---|---|"]
    for m in args.modes:
        rs = by_mode[m]
        if not rs:
            continue
        per = ", ".join("%s (%s–%s)" % (fmt_pct(r["success"]), fmt_pct(r["ci_low"]),
                                        fmt_pct(r["ci_high"])) for r in rs)
        lines.append("| %s | %d | %s | %s | %.2f | %s | %.0f | %s |" % (
            m, len(rs), per, fmt_pct(mean([r["success"] for r in rs])),
            mean([r["return"] for r in rs]), fmt_pct(mean([r["format_valid"] for r in rs])),
            mean([r["wall_s"] for r in rs]), fmt_pct(mean([r["guide_time_share"] for r in rs]))))
    head = ("Warm start (shared by every run): %s %% success (95 %% CI %s–%s), "
            "format-valid %s %%, on %d eval episodes (seed %d).\n\n" % (
                fmt_pct(warm_res["success_rate"]), fmt_pct(warm_res["success_ci_low"]),
                fmt_pct(warm_res["success_ci_high"]), fmt_pct(warm_res["format_valid"]),
                warm_res["episodes"], args.eval_seed))
    tv = ["| run | version | policy success % | merged teacher success % | "
          "policy / teacher format-valid % |", "|---|---|---|---|---|"]
    for name, rows in tvp.items():
        for r in rows:
            tv.append("| %s | v%d | %s | %s | %s / %s |" % (
                name, r["version"], fmt_pct(r["policy"]), fmt_pct(r["teacher"]),
                fmt_pct(r["policy_valid"]), fmt_pct(r["teacher_valid"])))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(head + "\n".join(lines) + "\n")
    with open(os.path.join(args.out, "teacher-vs-policy.md"), "w") as f:
        f.write("\n".join(tv) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"warm": warm_res, "runs": results, "teacher_vs_policy": tvp}, f, indent=1)
    print(head + "\n".join(lines) + "\n\n" + "\n".join(tv))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--gtrt", default=os.environ.get("GTRT_BIN", "build/gtrt"))
    ap.add_argument("--eval-episodes", type=int, default=200)
    ap.add_argument("--eval-seed", type=int, default=12345,
                    help="seed of the final eval deals (the same for every run)")
    ap.add_argument("--teacher-points", type=int, default=4,
                    help="versions along each run where policy and merged teacher are compared")
    ap.add_argument("--teacher-episodes", type=int, default=100)
    ap.add_argument("--teacher-seeds", default="1",
                    help="seeds whose runs get the teacher-vs-policy comparison")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in MODES:
            sys.exit("unknown mode %s (expected %s)" % (m, ", ".join(MODES)))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    tseeds = {int(s) for s in args.teacher_seeds.split(",") if s}
    os.makedirs(args.out, exist_ok=True)
    updates = int(config_value(args, "ppo", "updates"))
    warm, warm_res = warm_start(args)
    results, tvp = [], {}
    for seed in seeds:
        for mode in args.modes:
            run_dir, wall = train(args, warm, mode, seed, updates)
            r = summarise_run(args, mode, seed, run_dir, wall, updates)
            log("%s-s%d: final success %.1f %%, wall %.0f s" % (mode, seed, 100 * r["success"],
                                                                wall))
            results.append(r)
            if seed in tseeds:
                tvp["%s-s%d" % (mode, seed)] = teacher_vs_policy(args, warm, run_dir, updates)
        plot = [os.path.join(args.out, "%s-s%d" % (m, seed)) for m in args.modes]
        run([args.gtrt, "plot"] + plot + ["-o", os.path.join(args.out, "curves-seed%d.svg" % seed),
                                          "--smooth", "0.8", "--title",
                                          "%s, seed %d" % (os.path.basename(args.out), seed)])
    write_table(args, warm_res, results, tvp)


if __name__ == "__main__":
    main()
