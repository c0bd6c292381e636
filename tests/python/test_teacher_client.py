"""The Python teacher client (teacher/clients/python/gtrt_teacher.py)
against a real teacher and against `gtrt logits`.

1. Its run-time protobuf schema matches proto/gtrt.proto: every message it
   speaks, field by field (number, label, wire-compatible type), and the
   message type numbers, against the descriptor set protoc-c builds.
2. A learner (tiny random policy, Points24) and a teacher run as processes;
   for seeded observations that `gtrt logits --json --save-obs` builds (the
   image bytes as sent, prompt and answer ids), the Python client's logprobs
   equal what `gtrt logits` printed (max abs diff 1e-6) in the sampled, top-k
   and full modes and at another temperature; float16 replies are the
   float32 values rounded to float16 (within half a float16 step); generation
   gives the same answer as `gtrt logits --generate` with the same settings.
3. Errors come back as errors, not hangs: top_k 65 raises TeacherError with
   the teacher's code 9 and reason; a min_version the teacher does not have
   raises TeacherUnavailable naming the version; only dead endpoints raise
   TeacherUnavailable after the attempts; a dead endpoint before the live
   one still gets every answer from the live one.
4. Replies that do not fit the request (a fake teacher in a thread answering
   with too few positions, then a wrong request id) are not used: the
   client says "bad reply" and gives up after its attempts.

Exits nonzero on any mismatch."""
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.environ.get('GTRT_SOURCE_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('GTRT_BUILD_DIR', os.path.join(SRC, 'build'))
GTRT = os.environ.get('GTRT_BIN') or os.path.join(BUILD, 'gtrt')
sys.path.insert(0, os.path.join(SRC, 'teacher', 'clients', 'python'))

import zmq  # noqa: E402
import gtrt_teacher as gt  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

FAILURES = []
WAIT_S = 120  # bounded waits: a bug fails instead of hanging


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print('FAIL: ' + what)
    return cond


# ==== 1. schema ====

_T = descriptor_pb2.FieldDescriptorProto
_VARINT = {_T.TYPE_UINT32, _T.TYPE_ENUM}


def check_schema(tmp):
    protoc = shutil.which('protoc-c') or shutil.which('protoc')
    if not protoc:
        print('schema: skipped (no protoc-c)')
        return
    out = os.path.join(tmp, 'gtrt.desc')
    subprocess.run([protoc, '--proto_path=' + os.path.join(SRC, 'proto'),
                    '--descriptor_set_out=' + out, 'gtrt.proto'], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, 'rb') as f:
        fds.ParseFromString(f.read())
    real = {m.name: m for fd in fds.file for m in fd.message_type}
    enums = {v.name: v.number for fd in fds.file for e in fd.enum_type for v in e.value}
    for name in ('MSG_STATUS_REQUEST', 'MSG_STATUS_REPLY', 'MSG_ERROR', 'MSG_LOGITS_REQUEST',
                 'MSG_LOGITS_REPLY', 'MSG_GENERATE_REQUEST', 'MSG_GENERATE_REPLY',
                 'ROLE_CLIENT'):
        check(enums.get(name) == getattr(gt, name),
              'schema: %s is %s in gtrt.proto, %s here' % (name, enums.get(name),
                                                           getattr(gt, name)))
    check(enums.get('LOGITS_TOPK') == gt.MODES['topk'] and
          enums.get('LOGITS_FULL') == gt.MODES['full'] and enums.get('FLOAT_F16') == 1,
          'schema: logits modes or float formats differ')
    for msg, cls in gt.MESSAGES.items():
        r = real.get(msg)
        if not check(r is not None, 'schema: message %s missing from gtrt.proto' % msg):
            continue
        mine = {f.number: f for f in cls.DESCRIPTOR.fields}
        theirs = {f.number: f for f in r.field}
        check(set(mine) == set(theirs), 'schema: %s field numbers %s vs %s'
              % (msg, sorted(mine), sorted(theirs)))
        for num, f in theirs.items():
            m = mine.get(num)
            if m is None:
                continue
            same_type = m.type == f.type or (m.type in _VARINT and f.type in _VARINT)
            check(m.name == f.name and same_type and m.label == f.label,
                  'schema: %s.%s (%d) differs' % (msg, f.name, num))
    print('schema: %d messages checked' % len(gt.MESSAGES))


# ==== services ====

def dead_tcp():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return 'tcp://127.0.0.1:%d' % port


class Services:
    def __init__(self, tmp):
        self.tmp = tmp
        self.learner_ep = 'ipc://%s/learner' % tmp
        self.teacher_ep = 'ipc://%s/teacher' % tmp
        sets = ['learner.bind=' + self.learner_ep, 'learner.connect=' + self.learner_ep,
                'learner.publish_bind=ipc://%s/publish' % tmp,
                'learner.publish_connect=ipc://%s/publish' % tmp,
                'teacher.bind=' + self.teacher_ep, 'run.out_dir=%s/runs' % tmp,
                'run.name=pyclient', 'run.seed=5', 'net.heartbeat_ms=200',
                'metrics.prometheus_bind=', 'metrics.tensorboard=false', 'model.preset=tiny',
                'env.name=points24', 'ppo.updates=0']
        args = [a for s in sets for a in ('--set', s)]
        self.procs = []
        for role in ('learner', 'teacher'):
            log = open(os.path.join(tmp, role + '.log'), 'wb')
            self.procs.append(subprocess.Popen([GTRT, role] + args, stdout=subprocess.DEVNULL,
                                               stderr=log))

    def wait_model(self):
        deadline = time.monotonic() + WAIT_S
        with gt.TeacherClient(self.teacher_ep, timeout_ms=2000, attempts=1) as c:
            while time.monotonic() < deadline:
                try:
                    if c.status()['counters'].get('has_model') == 1:
                        return True
                except gt.TeacherUnavailable:
                    pass
                time.sleep(0.2)
        return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()


# ==== 2. the client against `gtrt logits` ====

def gtrt_logits(ep, seed, *extra, obs=None):
    cmd = [GTRT, 'logits', '--teacher', ep, '--env', 'points24', '--seed', str(seed), '--json']
    if obs:
        cmd += ['--save-obs', obs]
    r = subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=WAIT_S)
    if not check(r.returncode == 0, 'gtrt logits %s failed: %s' % (extra, r.stderr)):
        return None
    return json.loads(r.stdout)


def seq_of(j, obs):
    with open(obs, 'rb') as f:
        image = f.read()
    return gt.Seq(prompt=j['prompt_ids'], answer=j['answer_ids'], image=image, shape=j['image'])


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0


def f16_round(x):
    return struct.unpack('<e', struct.pack('<e', x))[0]


def check_sampled(c, ep, tmp, seed, answer=None):
    obs = os.path.join(tmp, 'obs-%d.u8' % seed)
    extra = ('--answer', answer) if answer else ()
    j = gtrt_logits(ep, seed, *extra, obs=obs)
    if j is None:
        return None
    s = seq_of(j, obs)
    want = [t['logprob'] for t in j['tokens']]
    r = c.logits([s])
    check(r.teacher_version == j['teacher_version'] == 0, 'seed %d: versions' % seed)
    got = [row[0] for row in r.values[0]]
    d = max_diff(got, want)
    check(len(got) == len(want) and d <= 1e-6, 'seed %d: sampled differs by %g' % (seed, d))
    h = c.logits([s], f16=True)
    for p, (half, full) in enumerate(zip((row[0] for row in h.values[0]), got)):
        step = 2.0 ** (math.frexp(full)[1] - 11)  # a float16 ulp at |full|
        if not check(half == f16_round(full) and abs(half - full) <= step / 2,
                     'seed %d pos %d: float16 %r for %r' % (seed, p, half, full)):
            break
    j7 = gtrt_logits(ep, seed, '--temperature', '0.7', *extra)
    r7 = c.logits([s], temperature=0.7)
    d = max_diff([row[0] for row in r7.values[0]], [t['logprob'] for t in j7['tokens']])
    check(d <= 1e-6, 'seed %d: T=0.7 differs by %g' % (seed, d))
    print('seed %d: %d tokens sampled/f16/T=0.7 agree' % (seed, len(got)))
    return s


def check_topk_full(c, ep, s, seed):
    j = gtrt_logits(ep, seed, '--topk', '5')
    r = c.logits([s], mode='topk', top_k=5)
    for p, tok in enumerate(j['tokens']):
        ids = [a['id'] for a in tok['topk']]
        vals = [a['logprob'] for a in tok['topk']]
        if not check(r.ids[0][p] == ids and max_diff(r.values[0][p], vals) <= 1e-6,
                     'seed %d pos %d: top-k %s %s vs %s %s'
                     % (seed, p, r.ids[0][p], r.values[0][p], ids, vals)):
            break
    j = gtrt_logits(ep, seed, '--full')
    r = c.logits([s], mode='full')
    check(r.vocab == len(j['tokens'][0]['full']), 'full: vocabulary %d' % r.vocab)
    worst = max(max_diff(r.values[0][p], tok['full']) for p, tok in enumerate(j['tokens']))
    check(worst <= 1e-6, 'seed %d: full differs by %g' % (seed, worst))
    # A score range: the rows of positions 2..5 only.
    part = gt.Seq(s.prompt, s.image, s.shape, s.answer, score_begin=2, score_end=6)
    r = c.logits([part, s])
    check(len(r.values[0]) == 4 and len(r.values[1]) == len(s.answer) and
          max_diff([x[0] for x in r.values[0]], [x[0] for x in r.values[1][2:6]]) <= 1e-6,
          'score range [2, 6) does not match the whole answer')
    print('seed %d: top-k, full and a score range agree' % seed)


def check_generate(c, ep, s, seed):
    j = gtrt_logits(ep, seed, '--generate', '--temperature', '0.9', '--topk', '7',
                    '--max-new', '12', '--sample-seed', '4')
    r = c.generate([s], temperature=0.9, top_k=7, max_new=12, seed=4)
    a = r.answers[0]
    check(a.ids == j['answer_ids'] and
          [gt.KINDS[k] for k in a.kind] == [t['kind'] for t in j['tokens']] and
          max_diff(a.logprob, [t['logprob'] for t in j['tokens']]) <= 1e-6,
          'generate: %s vs %s' % (a.ids, j['answer_ids']))
    print('generate: %d tokens agree' % len(a.ids))


# ==== 3. errors ====

def check_errors(ep, s):
    with gt.TeacherClient(ep, timeout_ms=3000, attempts=2) as c:
        try:
            c.logits([s], mode='topk', top_k=65)
            check(False, 'top_k 65 was served')
        except gt.TeacherError as e:
            check(e.code == 9 and 'top_k 65' in e.message, 'top_k 65: %d %s' % (e.code, e))
        try:
            c.logits([s], min_version=7)
            check(False, 'min_version 7 was served by a v0 teacher')
        except gt.TeacherUnavailable as e:
            check('wants at least 7' in str(e) and c.stats['version_refused'] == 2,
                  'min_version: %s %s' % (e, c.stats))
    dead = [dead_tcp(), 'ipc://%s/nobody' % os.path.dirname(ep[len('ipc://'):])]
    with gt.TeacherClient(dead, timeout_ms=300, attempts=3) as c:
        try:
            c.logits([s])
            check(False, 'dead teachers answered')
        except gt.TeacherUnavailable as e:
            check(all(d in str(e) for d in dead) and c.stats['timeouts'] == 3,
                  'dead teachers: %s %s' % (e, c.stats))
    with gt.TeacherClient([dead[0], ep], timeout_ms=1500, attempts=2,
                          cooldown_ms=3600 * 1000) as c:
        for _ in range(4):
            check(c.logits([s]).endpoint == ep, 'dead + live: answered by the dead one')
        check(c.stats['timeouts'] == 1 and c.stats['attempts'] == 5,
              'dead + live: %s' % c.stats)
    print('errors: refusals, dead teachers and a dead + live pair behave')


# ==== 4. replies that do not fit ====

def fake_teacher(ep, stop):
    """Answers every logits request once with one position too few, then
    with a reply to another request id."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ep)
    n = 0
    while not stop.is_set():
        if not sock.poll(50):
            continue
        frames = sock.recv_multipart()
        h = gt.Header()
        h.ParseFromString(frames[1])
        rid = h.request_id if n % 2 == 0 else h.request_id + 1000
        body = gt.MESSAGES['LogitsReply'](teacher_version=0, mode=0, float_format=0, vocab=128)
        body.results.add(positions=1)
        hdr = gt.Header(schema_version=1, role=3, sender_id='fake', type=gt.MSG_LOGITS_REPLY,
                        request_id=rid, payload_frames=1)
        sock.send_multipart([frames[0], hdr.SerializeToString(), body.SerializeToString(),
                             struct.pack('<f', -1.0)])
        n += 1
    sock.close(0)


def check_bad_replies(tmp, s):
    ep = 'ipc://%s/fake' % tmp
    stop = threading.Event()
    th = threading.Thread(target=fake_teacher, args=(ep, stop))
    th.start()
    try:
        with gt.TeacherClient(ep, timeout_ms=500, attempts=2) as c:
            try:
                c.logits([s])
                check(False, 'a reply with too few positions was used')
            except gt.TeacherUnavailable as e:
                check('bad reply' in str(e) and 'positions' in str(e) and
                      c.stats['bad_replies'] == 1 and c.stats['timeouts'] == 1,
                      'bad replies: %s %s' % (e, c.stats))
    finally:
        stop.set()
        th.join()
    print('bad replies: refused')


def main():
    tmp = tempfile.mkdtemp(prefix='gtrt-pyclient-')
    check_schema(tmp)
    svc = Services(tmp)
    try:
        if not check(svc.wait_model(), 'the teacher got no model; logs in ' + tmp):
            return 1
        ep = svc.teacher_ep
        with gt.TeacherClient(ep, timeout_ms=10000) as c:
            s = check_sampled(c, ep, tmp, 3)
            check_sampled(c, ep, tmp, 8, answer='{"cards": [1, 2, 3, 4], "formula": "( 3", '
                                              '"thoughts": "1 + 2 + 3 = 6", "action": "+"}')
            if s is not None:
                check_topk_full(c, ep, s, 3)
                check_generate(c, ep, s, 3)
                check_errors(ep, s)
                check_bad_replies(tmp, s)
    finally:
        svc.stop()
    if FAILURES:
        print('%d failure(s); logs in %s' % (len(FAILURES), tmp))
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print('ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
