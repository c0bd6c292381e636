#!/usr/bin/python3
"""Check gtrt's deployment files against each other and against the gtrt
executable: the Kubernetes example (deploy/k8s) and the systemd units
(deploy/systemd). Used by tests/cluster/test_k8s_manifests.sh.

Kubernetes: every manifest parses and has the expected kind and apiVersion;
the kustomization lists every manifest; selectors match pod labels; every
container runs the same image; each container's effective configuration
(the ConfigMap's .ini plus its --set arguments, as `gtrt config` reads them)
loads, uses only keys gtrt knows, and agrees with the container ports and the
Services (bind ports, the endpoints actors and teachers connect to, the
advertised teacher endpoint); the --config path lies in the mounted
ConfigMap; every security.* path lies in a read-only Secret mount that
provides that file, never world-readable; actors never see the server's
secret key.

systemd: every unit has the keys a long-running gtrt service needs, runs an
existing gtrt subcommand (or the learner's start script, which resumes),
reads an example .ini that loads with the unit's --set options, and passes
`systemd-analyze verify` when that is available.

Prints one line per problem and exits 1 when there is any; 0 otherwise.
"""
import argparse
import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)
    print("check_manifests: " + msg)


# ==== gtrt itself ====

class Gtrt:
    def __init__(self, path):
        self.path = path
        out = self.run(["config", "--keys"])
        self.keys = {line.split()[0] for line in out.splitlines() if line.strip()}
        if not self.keys:
            sys.exit("check_manifests: `%s config --keys` listed no keys" % path)
        help_text = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
        self.commands = set(re.findall(r"^  ([a-z]+)\s{2,}", help_text, re.M))
        if "learner" not in self.commands:
            sys.exit("check_manifests: cannot read the commands from `%s --help`" % path)

    def run(self, args):
        r = subprocess.run([self.path] + args, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError((r.stderr or r.stdout).strip())
        return r.stdout

    def effective(self, ini_text, sets, where):
        """The effective configuration {section.key: value} of an .ini text
        plus --set options, or None after reporting why it does not load."""
        for s in sets:
            key = s.split("=", 1)[0]
            if "=" not in s or key not in self.keys:
                problem("%s: --set %s: no such key (gtrt config --keys)" % (where, s))
                return None
        with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
            f.write(ini_text)
        try:
            args = ["config", "--config", f.name]
            for s in sets:
                args += ["--set", s]
            try:
                out = self.run(args)
            except RuntimeError as e:
                problem("%s: the configuration does not load: %s" % (where, e))
                return None
        finally:
            os.unlink(f.name)
        cfg, section = {}, None
        for line in out.splitlines():
            if line.startswith("["):
                section = line.strip("[] ")
            elif " = " in line and not line.startswith(";"):
                k, v = line.split(" = ", 1)
                cfg["%s.%s" % (section, k.strip())] = v.strip()
            elif line.endswith(" =") and not line.startswith(";"):
                cfg["%s.%s" % (section, line[:-2].strip())] = ""
        return cfg

    def ini_keys(self, ini_text, where):
        """Report keys of an .ini that gtrt does not know."""
        p = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), comment_prefixes=(";", "#"),
                                      interpolation=None)
        try:
            p.read_string(ini_text)
        except configparser.Error as e:
            problem("%s: not an .ini file: %s" % (where, e))
            return
        for sec in p.sections():
            for k in p[sec]:
                if "%s.%s" % (sec, k) not in self.keys:
                    problem("%s: unknown key %s.%s (gtrt config --keys)" % (where, sec, k))


def endpoint_port(ep):
    m = re.match(r"^tcp://(.+):(\d+)$", ep or "")
    return (m.group(1), int(m.group(2))) if m else (None, None)


# ==== Kubernetes ====

API = {"ConfigMap": "v1", "Service": "v1", "Secret": "v1", "StatefulSet": "apps/v1",
       "Deployment": "apps/v1", "PersistentVolumeClaim": "v1",
       "Kustomization": "kustomize.config.k8s.io/v1beta1"}
WANT = {("StatefulSet", "gtrt-learner"): "learner", ("Deployment", "gtrt-teacher"): "teacher",
        ("Deployment", "gtrt-actor"): "actor"}


def load_k8s(d):
    docs = []
    for name in sorted(os.listdir(d)):
        if not name.endswith((".yaml", ".yml")):
            continue
        try:
            with open(os.path.join(d, name)) as f:
                for doc in yaml.safe_load_all(f):
                    if doc is not None:
                        docs.append((name, doc))
        except yaml.YAMLError as e:
            problem("%s: does not parse as YAML: %s" % (name, str(e).replace("\n", " ")))
    return docs


def check_k8s(d, gtrt):
    docs = load_k8s(d)
    objs = {}
    kust = None
    for fname, doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            problem("%s: a document without kind and apiVersion" % fname)
            continue
        kind = doc["kind"]
        if kind not in API:
            problem("%s: unexpected kind %s" % (fname, kind))
            continue
        if doc["apiVersion"] != API[kind]:
            problem("%s: %s has apiVersion %s, want %s" % (fname, kind, doc["apiVersion"], API[kind]))
        if kind == "Kustomization":
            kust = (fname, doc)
            continue
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            problem("%s: a %s without metadata.name" % (fname, kind))
            continue
        objs[(kind, name)] = (fname, doc)
    for key in list(WANT) + [("ConfigMap", "gtrt-config"), ("Service", "gtrt-learner"),
                             ("Service", "gtrt-teacher")]:
        if key not in objs:
            problem("no %s named %s" % key)

    # secrets: from the kustomization's secretGenerator or Secret manifests
    secrets = {}
    if kust:
        kf, k = kust
        listed = set(k.get("resources") or [])
        for fname, doc in docs:
            if doc is not k and fname not in listed and fname != kf:
                problem("%s: not listed in %s resources" % (fname, kf))
        for r in listed:
            if not os.path.exists(os.path.join(d, r)):
                problem("%s lists %s, which does not exist" % (kf, r))
        for g in k.get("secretGenerator") or []:
            files = {}
            for f in g.get("files") or []:
                key, _, src = f.partition("=")
                files[key if src else os.path.basename(key)] = src or key
            secrets[g["name"]] = set(files)
    for (kind, name), (_, doc) in objs.items():
        if kind == "Secret":
            secrets[name] = set((doc.get("data") or {}).keys()) | set((doc.get("stringData") or {}).keys())

    cm = objs.get(("ConfigMap", "gtrt-config"))
    cm_data = (cm[1].get("data") or {}) if cm else {}
    for fname in cm_data:
        if fname.endswith(".ini"):
            gtrt.ini_keys(cm_data[fname], "ConfigMap gtrt-config %s" % fname)

    images = {}
    pods = {}  # role -> (labels, container, volumes, pod spec)
    for (kind, name), (fname, doc) in objs.items():
        if kind not in ("StatefulSet", "Deployment"):
            continue
        spec = doc.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            problem("%s %s: selector %s does not match its pod labels %s" % (kind, name, sel, labels))
        pspec = tmpl.get("spec") or {}
        containers = pspec.get("containers") or []
        if len(containers) != 1:
            problem("%s %s: expected one container, found %d" % (kind, name, len(containers)))
            continue
        c = containers[0]
        images.setdefault(c.get("image"), []).append("%s %s" % (kind, name))
        role = WANT.get((kind, name))
        if role:
            pods[role] = (labels, c, pspec, doc)
        if kind == "StatefulSet":
            svc = spec.get("serviceName")
            if ("Service", svc) not in objs:
                problem("StatefulSet %s: serviceName %s is not a Service here" % (name, svc))
            claims = {(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []}
            mounts = {m.get("name") for m in c.get("volumeMounts") or []}
            if not claims or not claims & mounts:
                problem("StatefulSet %s: no volumeClaimTemplate mounted for its runs" % name)
    if len(images) != 1 or None in images or "" in images:
        problem("the workloads do not all run one image: %s" % images)

    services = {name: doc for (kind, name), (_, doc) in objs.items() if kind == "Service"}
    for sname, svc in services.items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        if not any(sel and all(lab.get(k) == v for k, v in sel.items()) for lab, *_ in pods.values()):
            problem("Service %s: selector %s matches no gtrt pod" % (sname, sel))

    for role in ("learner", "teacher", "actor"):  # the learner's binds first: the others connect to them
        if role in pods:
            labels, c, pspec, _ = pods[role]
            check_container(role, labels, c, pspec, cm_data, secrets, services, gtrt)


def container_ports(c):
    return {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}


def service_target(svc, port, cports):
    """The container port a Service port number leads to, or None."""
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("port") == port:
            t = p.get("targetPort", port)
            return cports.get(t) if isinstance(t, str) else t
    return None


def service_for(services, labels):
    for name, svc in services.items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            return name, svc
    return None, None


def check_container(role, labels, c, pspec, cm_data, secrets, services, gtrt):
    where = "%s container" % role
    env = {e["name"]: e for e in c.get("env") or [] if "name" in e}
    argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
    if c.get("command"):
        script = argv[0]
        if not script.endswith("gtrt-learner-start"):
            problem("%s: unexpected command %s" % (where, script))
        config_path = (env.get("GTRT_CONFIG") or {}).get("value", "")
        sets_args = argv[1:]
        if role != "learner":
            problem("%s: only the learner runs gtrt-learner-start" % where)
    else:
        if not argv or argv[0] != role or argv[0] not in gtrt.commands:
            problem("%s: runs `gtrt %s`, want `gtrt %s`" % (where, argv[0] if argv else "", role))
        config_path, sets_args = "", argv[1:]
        if "--config" in argv:
            config_path = argv[argv.index("--config") + 1]
    sets = [sets_args[i + 1] for i, a in enumerate(sets_args[:-1]) if a == "--set"]
    # $(VAR) references must name env vars of the container
    for a in argv:
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a):
            if var not in env:
                problem("%s: argument %s uses $(%s), which the container does not define" % (where, a, var))
    subst = {"POD_IP": "10.0.0.7", "POD_NAME": "%s-0" % role}
    sets = [re.sub(r"\$\(([A-Za-z_0-9]+)\)", lambda m: subst.get(m.group(1), "x"), s) for s in sets]

    mounts = {}
    volumes = {v.get("name"): v for v in pspec.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        mounts[m.get("mountPath", "").rstrip("/")] = (m, volumes.get(m.get("name")) or {})

    # --config: a file of the mounted ConfigMap
    cfg_dir, cfg_file = os.path.dirname(config_path), os.path.basename(config_path)
    m, vol = mounts.get(cfg_dir, (None, {}))
    if not config_path:
        problem("%s: no --config (or GTRT_CONFIG)" % where)
        return
    if not m or (vol.get("configMap") or {}).get("name") != "gtrt-config" or cfg_file not in cm_data:
        problem("%s: its configuration %s is not a file of the ConfigMap gtrt-config mounted at %s"
                % (where, config_path, cfg_dir))
        return
    cfg = gtrt.effective(cm_data[cfg_file], sets, where)
    if cfg is None:
        return

    # security.*: files of a read-only, private Secret mount
    provided = {}
    for path, (mnt, vol) in mounts.items():
        sec = vol.get("secret")
        if not sec:
            continue
        if not mnt.get("readOnly"):
            problem("%s: the Secret %s is not mounted readOnly" % (where, sec.get("secretName")))
        mode = sec.get("defaultMode", 0o644)
        if mode & 0o007:
            problem("%s: the Secret %s is mounted with mode %o: others may read the keys (gtrt refuses)"
                    % (where, sec.get("secretName"), mode))
        name = sec.get("secretName")
        if name not in secrets:
            problem("%s: mounts the Secret %s, which is neither generated nor defined here" % (where, name))
            continue
        files = secrets[name]
        if sec.get("items"):
            files = {i.get("path") for i in sec["items"] if i.get("key") in secrets[name]}
        for f in files:
            provided[os.path.join(path, f)] = name
    for key in ("security.server_key", "security.client_key", "security.allow"):
        p = cfg.get(key, "")
        if p and p not in provided:
            problem("%s: %s = %s is not a file of a mounted Secret (mounted: %s)"
                    % (where, key, p, ", ".join(sorted(provided)) or "none"))
    server_key = cfg.get("security.server_key", "")
    if not server_key:
        problem("%s: security.server_key is empty: the pod would talk without CURVE" % where)
    binds = role in ("learner", "teacher")
    if binds and (not server_key.endswith(".key") or not cfg.get("security.allow")):
        problem("%s: binds, so it needs the server key pair (.key) and security.allow" % where)
    if role in ("teacher", "actor") and not cfg.get("security.client_key"):
        problem("%s: connects, so it needs security.client_key" % where)
    if role == "actor":
        if server_key.endswith(".key"):
            problem("actor container: uses the server's secret key; server.pub is enough")
        if any(p.endswith("/server.key") for p in provided):
            problem("actor container: the server's secret key is mounted into actor pods")

    # ports: what the process binds is what the container exposes and the Service serves
    cports = container_ports(c)
    sname, svc = service_for(services, labels)
    binds_at = []
    if role == "learner":
        binds_at = [("learner.bind", cfg.get("learner.bind")), ("learner.publish_bind", cfg.get("learner.publish_bind"))]
        prom = cfg.get("metrics.prometheus_bind", "")
        if prom:
            binds_at.append(("metrics.prometheus_bind", "tcp://" + prom))
    elif role == "teacher":
        binds_at = [("teacher.bind", cfg.get("teacher.bind"))]
    for key, ep in binds_at:
        host, port = endpoint_port(ep)
        if port is None:
            problem("%s: %s = %s is not tcp://HOST:PORT" % (where, key, ep))
            continue
        if host not in ("*", "0.0.0.0"):
            problem("%s: %s = %s binds %s only, not the pod's interfaces" % (where, key, ep, host))
        if port not in cports.values():
            problem("%s: %s binds port %d, but the container ports are %s" % (where, key, port, sorted(cports.values())))
        if not svc or port not in [service_target(svc, p.get("port"), cports)
                                   for p in (svc.get("spec") or {}).get("ports") or []]:
            problem("%s: no port of Service %s leads to its %s port %d" % (where, sname, key, port))
    if role == "teacher":
        host, port = endpoint_port(cfg.get("teacher.advertise"))
        _, bport = endpoint_port(cfg.get("teacher.bind"))
        if port is None or port != bport:
            problem("teacher container: teacher.advertise = %s does not name its bind port %s"
                    % (cfg.get("teacher.advertise"), bport))
        pod_ip = (env.get("POD_IP") or {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if host != subst["POD_IP"] and host not in services:
            problem("teacher container: teacher.advertise host %s is neither the pod IP nor a Service" % host)
        if host == subst["POD_IP"] and pod_ip != "status.podIP":
            problem("teacher container: POD_IP does not come from the downward API (status.podIP)")

    # connections: the learner's Service, at ports that lead to the learner's binds
    lsvc = services.get("gtrt-learner")
    if role == "learner":
        LEARNER_PORTS["ports"] = cports
        LEARNER_PORTS["learner.bind"] = endpoint_port(cfg.get("learner.bind"))[1]
        LEARNER_PORTS["learner.publish_bind"] = endpoint_port(cfg.get("learner.publish_bind"))[1]
    for key, bind_key in (("learner.connect", "learner.bind"), ("learner.publish_connect", "learner.publish_bind")):
        host, port = endpoint_port(cfg.get(key))
        if host is None:
            problem("%s: %s = %s is not tcp://HOST:PORT" % (where, key, cfg.get(key)))
            continue
        if host.split(".")[0] != "gtrt-learner":
            problem("%s: %s = %s does not name the Service gtrt-learner" % (where, key, cfg.get(key)))
        if lsvc is not None and "ports" in LEARNER_PORTS:
            got = service_target(lsvc, port, LEARNER_PORTS["ports"])
            want = LEARNER_PORTS.get(bind_key)
            if got != want:
                problem("%s: %s port %d leads to learner port %s, but the learner's %s is port %s"
                        % (where, key, port, got, bind_key, want))


LEARNER_PORTS = {}


# ==== systemd ====

def parse_unit(path):
    sections, cur, pending = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                cur = sections.setdefault(s[1:-1], {})
            elif "=" in s and cur is not None:
                k, v = s.split("=", 1)
                cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def check_systemd(d, gtrt):
    units = sorted(f for f in os.listdir(d) if f.endswith(".service"))
    want = {"gtrt-learner.service", "gtrt-teacher@.service", "gtrt-actor@.service"}
    for u in sorted(want - set(units)):
        problem("%s: missing" % u)
    for u in units:
        sec = parse_unit(os.path.join(d, u))
        where = u
        svc = sec.get("Service", {})
        one = lambda k: (svc.get(k) or [""])[-1]
        if not (sec.get("Unit", {}).get("Description")):
            problem("%s: no Description" % where)
        if "multi-user.target" not in " ".join(sec.get("Install", {}).get("WantedBy", [])):
            problem("%s: not WantedBy=multi-user.target" % where)
        for k, v in (("Restart", "on-failure"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                     ("KillSignal", "SIGTERM")):
            if one(k) != v:
                problem("%s: %s=%s, want %s" % (where, k, one(k) or "(unset)", v))
        if not one("User") or one("User") == "root":
            problem("%s: no dedicated User=" % where)
        exec_start = one("ExecStart")
        if not exec_start:
            problem("%s: no ExecStart" % where)
            continue
        spec = {"%i": "5556" if "teacher" in u else "0", "%H": "host1", "%%": "%"}
        env = {}
        for e in svc.get("Environment", []):
            for kv in shlex.split(e):
                k, _, v = kv.partition("=")
                env[k] = v
        text = re.sub(r"%[iH%]", lambda m: spec[m.group(0)], exec_start)
        text = re.sub(r"\$\{([A-Za-z_0-9]+)\}", lambda m: re.sub(r"%[iH%]", lambda n: spec[n.group(0)],
                                                                  env.get(m.group(1), "x")), text)
        argv = shlex.split(text)
        role = "learner" if "learner" in u else "teacher" if "teacher" in u else "actor"
        if argv[0].endswith("gtrt-learner-start"):
            script = os.path.join(d, "gtrt-learner-start")
            if role != "learner" or not os.access(script, os.X_OK):
                problem("%s: runs gtrt-learner-start, which is not in %s or not executable" % (where, d))
                continue
            body = open(script).read()
            if "--resume" not in body or "learner" not in body:
                problem("%s: gtrt-learner-start does not resume the run with `gtrt learner --resume`" % where)
            rw = " ".join(svc.get("ReadWritePaths", []) + ["/var/lib/" + s for s in svc.get("StateDirectory", [])])
            if "/var/lib/gtrt" not in rw:
                problem("%s: /var/lib/gtrt (the runs) is not writable under ProtectSystem=strict" % where)
            config_path = env.get("GTRT_CONFIG", "")
            sets = []
        else:
            if os.path.basename(argv[0]) != "gtrt" or len(argv) < 2 or argv[1] not in gtrt.commands:
                problem("%s: ExecStart %s does not run a gtrt subcommand (%s)"
                        % (where, exec_start, " ".join(sorted(gtrt.commands))))
                continue
            if argv[1] != role:
                problem("%s: runs `gtrt %s`, want `gtrt %s`" % (where, argv[1], role))
            config_path = argv[argv.index("--config") + 1] if "--config" in argv else ""
            sets = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
        if not config_path.startswith("/etc/gtrt/") or not config_path.endswith(".ini"):
            problem("%s: its configuration %s is not an /etc/gtrt/*.ini" % (where, config_path or "(none)"))
            continue
        example = os.path.join(d, os.path.basename(config_path))
        if not os.path.exists(example):
            problem("%s: reads %s, but there is no example %s" % (where, config_path, example))
            continue
        ini = open(example).read()
        gtrt.ini_keys(ini, os.path.basename(example))
        cfg = gtrt.effective(ini, sets, where)
        if cfg is None:
            continue
        if role == "teacher":
            _, bport = endpoint_port(cfg.get("teacher.bind"))
            _, aport = endpoint_port(cfg.get("teacher.advertise"))
            if bport is None or bport != aport:
                problem("%s: teacher.advertise %s does not name the bind port of teacher.bind %s"
                        % (where, cfg.get("teacher.advertise"), cfg.get("teacher.bind")))
        for key in ("security.server_key", "security.client_key", "security.allow"):
            p = cfg.get(key, "")
            if p and not p.startswith("/etc/gtrt/"):
                problem("%s: %s = %s is outside /etc/gtrt" % (where, key, p))
    verify_units(d, units)


def verify_units(d, units):
    """systemd-analyze verify in a scratch root holding the units, this
    system's own units (targets) and stand-ins for the executables; any
    message is a problem (unknown keys and bad values are only warnings)."""
    sa = shutil.which("systemd-analyze")
    sysunits = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") else "/lib/systemd/system"
    if not sa or not os.path.isdir(sysunits):
        print("check_manifests: systemd-analyze not available: unit files checked by this script only")
        return
    with tempfile.TemporaryDirectory() as root:
        etc = os.path.join(root, "etc/systemd/system")
        shutil.copytree(sysunits, os.path.join(root, "usr/lib/systemd/system"), symlinks=True)
        os.makedirs(etc)
        for p in ("usr/local/bin/gtrt", "usr/local/lib/gtrt/gtrt-learner-start"):
            os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
            with open(os.path.join(root, p), "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(os.path.join(root, p), 0o755)
        names = []
        for u in units:
            shutil.copy(os.path.join(d, u), etc)
            if u.endswith("@.service"):
                inst = u.replace("@.service", "@5556.service")
                os.symlink(u, os.path.join(etc, inst))
                names.append(inst)
            else:
                names.append(u)
        r = subprocess.run([sa, "--root=" + root, "verify"] + names, capture_output=True, text=True)
        msgs = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        for l in msgs:
            problem("systemd-analyze verify: " + l.replace(root, ""))
        if r.returncode and not msgs:
            problem("systemd-analyze verify failed (exit code %d)" % r.returncode)
        if not msgs and not r.returncode:
            print("check_manifests: systemd-analyze verify: %s clean" % ", ".join(names))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gtrt", required=True, help="the gtrt executable")
    ap.add_argument("--k8s", help="the Kubernetes example directory")
    ap.add_argument("--systemd", help="the systemd unit directory")
    a = ap.parse_args()
    gtrt = Gtrt(a.gtrt)
    if a.k8s:
        check_k8s(a.k8s, gtrt)
    if a.systemd:
        check_systemd(a.systemd, gtrt)
    if PROBLEMS:
        print("check_manifests: %d problem(s)" % len(PROBLEMS))
        return 1
    print("check_manifests: no problems (%s)" % ", ".join(x for x in (a.k8s, a.systemd) if x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
