"""The Python env server (actor/envs/remote/) on its own and against gtrt.

1. Its run-time protobuf schema matches proto/gtrt.proto: every message it
   speaks, field by field (number, label, wire-compatible type), against
   the descriptor set protoc-c builds from the .proto.
2. Request checking as wire_decode does it: garbage, a wrong schema
   version, a bad sender id or role, a payload count that lies, an
   unparsable body are dropped and counted; a message type it does not
   serve, an unknown session, a step out of order get an Error reply; a
   step sent again after a lost reply is answered again, not played twice.
3. `gtrt env play` prints the same lines for the C NumberLine and for
   remote:<the Python server> over several seeds and action lists, and
   `gtrt env solve` says clearly that a remote env has no oracle.

Exits nonzero on any mismatch."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get('GTRT_SOURCE_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('GTRT_BUILD_DIR', os.path.join(SRC, 'build'))
GTRT = os.environ.get('GTRT_BIN') or os.path.join(BUILD, 'gtrt')
sys.path.insert(0, os.path.join(SRC, 'actor', 'envs', 'remote'))

import envserver  # noqa: E402
import numberline_server  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print('FAIL: ' + what)


# ==== 1. schema ====

_T = descriptor_pb2.FieldDescriptorProto
# Types that share a wire encoding with the one this server declares.
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
    for name, value in [('MSG_ERROR', envserver.MSG_ERROR),
                        ('MSG_ENV_RESET', envserver.MSG_ENV_RESET),
                        ('MSG_ENV_STEP', envserver.MSG_ENV_STEP),
                        ('MSG_ENV_OBS', envserver.MSG_ENV_OBS),
                        ('ROLE_CLIENT', envserver.ROLE_CLIENT)]:
        check(enums.get(name) == value, 'schema: %s is %s in gtrt.proto, %d here'
              % (name, enums.get(name), value))
    for msg, cls in envserver.MESSAGES.items():
        r = real.get(msg)
        check(r is not None, 'schema: message %s missing from gtrt.proto' % msg)
        if r is None:
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
    print('schema: %d messages checked' % len(envserver.MESSAGES))


# ==== 2. request checking and sessions ====

def request(msg_type, body, sender='tester', version=1, role=2, payload=0, extra=()):
    h = envserver.Header(schema_version=version, role=role, sender_id=sender, type=msg_type)
    if payload:
        h.payload_frames = payload
    return [h.SerializeToString(), body.SerializeToString()] + list(extra)


def reply_kind(reply):
    if reply is None:
        return None
    h = envserver.Header()
    h.ParseFromString(reply[0])
    return h.type


def check_requests():
    srv = envserver.EnvServer(numberline_server.NumberLine, 'nl-test')
    reset = envserver.EnvReset(session=7, episode=1, seed=3, image_c=3)
    dropped = [
        ('garbage', [b'\x08\x99garbage', b'junk']),
        ('one frame', [b'x']),
        ('schema version 2', request(64, reset, version=2)),
        ('bad sender', request(64, reset, sender='no spaces please')),
        ('role 9', request(64, reset, role=9)),
        ('payload count lies', request(64, reset, payload=1)),
        ('body not an EnvReset', [request(64, reset)[0], b'\xff\xff\xff']),
        ('oversized body', [request(65, reset)[0], b'\x08\x01' * 600]),
    ]
    for what, frames in dropped:
        check(srv.handle(frames) is None, 'requests: %s was answered' % what)
    check(sum(v for k, v in srv.counters.items() if k.startswith('rejected_')) == len(dropped),
          'requests: rejections not counted: %s' % dict(srv.counters))

    hello = envserver.Error(message='hi')
    check(reply_kind(srv.handle(request(1, hello))) == envserver.MSG_ERROR,
          'requests: a hello did not get an error reply')
    step = envserver.EnvStep(session=7, episode=1, step=0, action=1)
    check(reply_kind(srv.handle(request(65, step))) == envserver.MSG_ERROR,
          'requests: a step before any reset was served')

    r = srv.handle(request(64, reset))
    check(reply_kind(r) == envserver.MSG_ENV_OBS and len(r) == 3,
          'requests: reset not answered with an observation')
    obs = envserver.EnvObs()
    obs.ParseFromString(r[1])
    check(obs.env == 'numberline' and list(obs.actions) == ['-', '+'] and obs.step == 0,
          'requests: reset reply does not describe the env')
    check(len(r[2]) == obs.image_c * obs.image_h * obs.image_w == 3 * 16 * 64,
          'requests: image payload size')

    first = srv.handle(request(65, step))
    again = srv.handle(request(65, step))
    check(first[1:] == again[1:] and srv.counters['steps_replayed'] == 1
          and srv.counters['steps'] == 1, 'requests: a resent step was played twice')
    late = envserver.EnvStep(session=7, episode=1, step=5, action=1)
    check(reply_kind(srv.handle(request(65, late))) == envserver.MSG_ERROR,
          'requests: an out-of-order step was served')
    other = envserver.EnvStep(session=7, episode=2, step=1, action=1)
    check(reply_kind(srv.handle(request(65, other))) == envserver.MSG_ERROR,
          'requests: a step of another episode was served')
    bad_action = envserver.EnvStep(session=7, episode=1, step=1, action=2)
    check(reply_kind(srv.handle(request(65, bad_action))) == envserver.MSG_ERROR,
          'requests: action 2 was served')
    huge = envserver.EnvReset(session=8, episode=1, seed=1, image_c=3, image_h=4096,
                              image_w=4096)
    check(reply_kind(srv.handle(request(64, huge))) == envserver.MSG_ERROR,
          'requests: a 48 MiB image was served')

    small = envserver.EnvServer(numberline_server.NumberLine, 'nl-test', max_sessions=2)
    for s in range(1, 5):
        small.handle(request(64, envserver.EnvReset(session=s, episode=1, seed=s)))
    check(len(small.sessions) == 2 and small.counters['sessions_dropped'] == 2,
          'sessions: the cap was not kept')
    print('requests: %d cases checked' % (len(dropped) + 10))


# ==== 3. gtrt env play, local and remote ====

def gtrt(*args):
    p = subprocess.run([GTRT, 'env'] + list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def check_cli(tmp):
    if not os.path.exists(GTRT):
        print('cli: skipped (no %s)' % GTRT)
        return
    ep = 'ipc://%s/nl' % tmp
    srv = subprocess.Popen(['/usr/bin/python3', numberline_server.__file__, '--bind', ep],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        check(srv.stdout.readline().startswith('READY '), 'cli: server did not start')
        remote = 'remote:' + ep
        lists = ['+,+,+,+,+', '-,-,-', '+,-,+,-,+,-,+,-,+,-', '-']
        for seed in range(5):
            for actions in lists:
                a = gtrt('play', '--env', 'numberline', '--seed', str(seed), '--actions', actions)
                b = gtrt('play', '--env', remote, '--seed', str(seed), '--actions', actions)
                check(a[0] == b[0] and a[1] == b[1],
                      'cli: seed %d %s: local %r vs remote %r' % (seed, actions, a, b))
        a = gtrt('play', '--env', 'numberline', '--cards', '0,4', '--actions', '+,+,+,+')
        b = gtrt('play', '--env', remote, '--cards', '0,4', '--actions', '+,+,+,+')
        check(a[:2] == b[:2] and '"won":true' in b[1], 'cli: --cards differs: %r vs %r' % (a, b))
        rc, out, err = gtrt('solve', '--env', remote, '--seed', '1')
        check(rc != 0 and 'no oracle' in err, 'cli: solve on a remote env: %r' % ((rc, out, err),))
        rc, out, err = gtrt('play', '--env', remote, '--actions', '+,jump')
        check(rc == 2 and 'jump' in err, 'cli: unknown action: %r' % ((rc, out, err),))
        print('cli: %d plays compared' % (5 * len(lists) + 1))
    finally:
        srv.terminate()
        srv.wait(timeout=30)


def main():
    tmp = tempfile.mkdtemp(prefix='gtrt-remote-py-')
    try:
        check_schema(tmp)
        check_requests()
        check_cli(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print('%d failure(s)' % len(FAILURES))
        return 1
    print('ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
