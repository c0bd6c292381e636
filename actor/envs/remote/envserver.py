"""A gtrt env server in Python: serves an environment to gtrt actors over
ZeroMQ with the env-server messages of proto/gtrt.proto (EnvReset and
EnvStep, each answered by an EnvObs whose payload frame is the image), so
an environment written in Python can be played through the C env
interface as "remote:<endpoint>".

Protobuf: the few messages this server speaks are described here as a
FileDescriptorProto and turned into classes at run time (Debian's
python3-protobuf; no protoc for Python needed). Their field numbers and
wire types must match proto/gtrt.proto; tests/python/test_remote_env.py
checks them against the descriptor that protoc-c builds from the .proto.
Header.role and Header.type are read as uint32 (the same varint on the
wire) so that a value this table does not name is still seen and refused.

Envelope: [routing id][Header][body][payload...]. Every request is checked
as wire_decode does in C (header size, schema_version, role, sender id,
type, payload count, body size and parse); a bad one is counted and
dropped. A well-formed request that cannot be served gets MSG_ERROR with a
message.

Sessions: one env per (sender id, session), created by EnvReset, dropped
after `idle_s` without requests or when more than `max_sessions` are open
(least recently used first). The last step's reply is kept, so a step that
a client sends again after a timeout is answered again, not played twice.

An env is an object with: name, actions (list of str), answer_keys (list of
(name, is_list)), native_w, native_h, format_valid, format_invalid,
reset(seed), deal(cards) -> bool, step(action) -> (reward, legal,
terminated, truncated), legal_actions() -> list, won, prompt() -> str,
draw() -> render.Canvas at the native size, info() -> dict.
"""

import collections
import json
import re
import signal
import sys
import time

import zmq
import zmq.utils.z85
from google.protobuf import descriptor_pb2, descriptor_pool

try:
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # protobuf < 4.22
    from google.protobuf import message_factory as _mf

    def _message_class(desc):
        return _mf.MessageFactory(desc.file.pool).GetPrototype(desc)

try:
    from . import render
except ImportError:
    import render

SCHEMA_VERSION = 1
ROLE_CLIENT = 4  # Role: 1 learner, 2 actor, 3 teacher, 4 client
ROLE_MAX = 4
MSG_ERROR = 6
MSG_ENV_RESET = 64
MSG_ENV_STEP = 65
MSG_ENV_OBS = 66
MAX_HEADER_BYTES = 512      # WIRE_MAX_HEADER_BYTES
MAX_FRAMES = 64             # WIRE_MAX_FRAMES
MAX_BODY = {MSG_ENV_RESET: 4 << 10, MSG_ENV_STEP: 1 << 10}
MAX_IMAGE = 16 << 20        # REMOTE_ENV_MAX_IMAGE
MAX_SIDE = 4096             # RENDER_MAX_SIDE
EINVAL, ESTATE, ERANGE = 1, 12, 9  # gtrt error codes, as positive numbers

_ID_RE = re.compile(r'^[A-Za-z0-9._:@-]{1,64}$')

# ==== messages ====

_T = descriptor_pb2.FieldDescriptorProto
# name -> [(field, number, type, repeated)]; type is a scalar name or a
# message name.
SCHEMA = {
    'Header': [('schema_version', 1, 'uint32', False), ('role', 2, 'uint32', False),
               ('sender_id', 3, 'string', False), ('type', 4, 'uint32', False),
               ('request_id', 5, 'uint64', False), ('sent_unix_ms', 6, 'uint64', False),
               ('payload_frames', 7, 'uint32', False)],
    'Error': [('code', 1, 'uint32', False), ('message', 2, 'string', False)],
    'EnvReset': [('session', 1, 'uint64', False), ('episode', 2, 'uint64', False),
                 ('seed', 3, 'uint64', False), ('cards', 4, 'int32', True),
                 ('image_c', 5, 'uint32', False), ('image_h', 6, 'uint32', False),
                 ('image_w', 7, 'uint32', False), ('prompt_actions', 8, 'bool', False),
                 ('solvable_only', 9, 'bool', False)],
    'EnvStep': [('session', 1, 'uint64', False), ('episode', 2, 'uint64', False),
                ('step', 3, 'uint32', False), ('action', 4, 'uint32', False)],
    'EnvAnswerKey': [('name', 1, 'string', False), ('list', 2, 'bool', False)],
    'EnvObs': [('session', 1, 'uint64', False), ('episode', 2, 'uint64', False),
               ('step', 3, 'uint32', False), ('image_c', 4, 'uint32', False),
               ('image_h', 5, 'uint32', False), ('image_w', 6, 'uint32', False),
               ('prompt', 7, 'string', False), ('legal', 8, 'uint32', True),
               ('info_json', 9, 'string', False), ('action', 10, 'uint32', False),
               ('action_legal', 11, 'bool', False), ('reward', 12, 'double', False),
               ('terminated', 13, 'bool', False), ('truncated', 14, 'bool', False),
               ('done', 15, 'bool', False), ('won', 16, 'bool', False),
               ('env', 17, 'string', False), ('actions', 18, 'string', True),
               ('answer_keys', 19, 'EnvAnswerKey', True), ('native_w', 20, 'uint32', False),
               ('native_h', 21, 'uint32', False), ('format_valid', 22, 'double', False),
               ('format_invalid', 23, 'double', False)],
}

_SCALARS = {'uint32': _T.TYPE_UINT32, 'uint64': _T.TYPE_UINT64, 'int32': _T.TYPE_INT32,
            'bool': _T.TYPE_BOOL, 'double': _T.TYPE_DOUBLE, 'string': _T.TYPE_STRING}


def _build_messages():
    f = descriptor_pb2.FileDescriptorProto(name='gtrt_envserver.proto', package='gtrt',
                                           syntax='proto2')
    for msg, fields in SCHEMA.items():
        m = f.message_type.add(name=msg)
        for name, number, typ, repeated in fields:
            fd = m.field.add(name=name, number=number,
                             label=_T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL)
            if typ in _SCALARS:
                fd.type = _SCALARS[typ]
                if repeated and typ != 'string':
                    fd.options.packed = True
            else:
                fd.type = _T.TYPE_MESSAGE
                fd.type_name = '.gtrt.' + typ
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {name: _message_class(pool.FindMessageTypeByName('gtrt.' + name)) for name in SCHEMA}


MESSAGES = _build_messages()
Header = MESSAGES['Header']
Error = MESSAGES['Error']
EnvReset = MESSAGES['EnvReset']
EnvStep = MESSAGES['EnvStep']
EnvObs = MESSAGES['EnvObs']


def encode_header(sender_id, msg_type, request_id=0, payload_frames=0, role=ROLE_CLIENT):
    h = Header(schema_version=SCHEMA_VERSION, role=role, sender_id=sender_id, type=msg_type,
               sent_unix_ms=int(time.time() * 1000))
    if request_id:
        h.request_id = request_id
    if payload_frames:
        h.payload_frames = payload_frames
    return h.SerializeToString()


def check_request(frames):
    """Decode [header][body][payload...] (routing id already removed) as
    wire_decode does. Returns (header, body, None) or (header or None,
    None, reason); with a header and no body the request deserves an
    error reply, without a header it is dropped."""
    if len(frames) < 2 or len(frames) > MAX_FRAMES:
        return None, None, 'bad_frames'
    if not frames[0] or len(frames[0]) > MAX_HEADER_BYTES:
        return None, None, 'bad_header_size'
    h = Header()
    try:
        h.ParseFromString(frames[0])
    except Exception:  # DecodeError, or a UnicodeDecodeError on some versions
        return None, None, 'bad_header'
    if not h.HasField('schema_version') or h.schema_version != SCHEMA_VERSION:
        return None, None, 'bad_version'
    if not h.HasField('role') or not 1 <= h.role <= ROLE_MAX or not _ID_RE.match(h.sender_id):
        return None, None, 'bad_sender'
    if not h.HasField('type'):
        return None, None, 'unknown_type'
    if h.payload_frames != len(frames) - 2:
        return None, None, 'bad_payload'
    cls = {MSG_ENV_RESET: EnvReset, MSG_ENV_STEP: EnvStep}.get(h.type)
    if cls is None:
        return h, None, 'unexpected_type'
    if len(frames[1]) > MAX_BODY[h.type]:
        return None, None, 'oversized_body'
    body = cls()
    try:
        body.ParseFromString(frames[1])
    except Exception:
        return None, None, 'bad_body'
    return h, body, None


# ==== sessions ====

class RequestError(Exception):
    """A well-formed request the server cannot serve: answered with MSG_ERROR."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Session:
    def __init__(self, env):
        self.env = env
        self.episode = 0
        self.steps = 0
        self.done = False
        self.shape = (3, env.native_h, env.native_w)
        self.last_step = None  # ((episode, step, action), reply body, image)
        self.touched = time.monotonic()


class EnvServer:
    """Sessions and request handling, without sockets (tests drive it
    directly as well)."""

    def __init__(self, make_env, server_id='envserver', max_sessions=1024, idle_s=600.0):
        self.make_env = make_env
        self.server_id = server_id
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self.sessions = collections.OrderedDict()
        self.counters = collections.Counter()

    # -- observation --

    def _obs(self, s, session_id):
        env = s.env
        c, h, w = s.shape
        o = EnvObs(session=session_id, episode=s.episode, step=s.steps, image_c=c, image_h=h,
                   image_w=w, prompt=env.prompt(), info_json=json.dumps(env.info()))
        o.legal.extend(env.legal_actions())
        o.won = bool(env.won)
        return o, render.image_bytes(env.draw(), c, h, w)

    def _describe(self, o, env):
        o.env = env.name
        o.actions.extend(env.actions)
        for name, is_list in env.answer_keys:
            o.answer_keys.add(name=name, list=is_list)
        o.native_w, o.native_h = env.native_w, env.native_h
        o.format_valid, o.format_invalid = env.format_valid, env.format_invalid

    # -- requests --

    def _shape(self, req, env):
        c = req.image_c if req.HasField('image_c') else 3
        h = req.image_h or env.native_h
        w = req.image_w or env.native_w
        if c not in (1, 3):
            raise RequestError(ERANGE, '%d image channels (want 1 or 3)' % c)
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE) or c * h * w > MAX_IMAGE:
            raise RequestError(ERANGE, 'image size %dx%dx%d out of range' % (c, h, w))
        return c, h, w

    def reset(self, sender, req):
        if not req.session or not req.episode:
            raise RequestError(EINVAL, 'env_reset needs a nonzero session and episode')
        key = (sender, req.session)
        s = self.sessions.get(key)
        if s is None:
            env = self.make_env(prompt_actions=req.prompt_actions,
                                solvable_only=req.solvable_only)
            s = Session(env)
            self.sessions[key] = s
            self.counters['sessions_opened'] += 1
        shape = self._shape(req, s.env)
        s.env.reset(req.seed)
        if req.cards and not s.env.deal(list(req.cards)):
            raise RequestError(EINVAL, '%s: these %d cards cannot be dealt'
                               % (s.env.name, len(req.cards)))
        s.shape, s.episode, s.steps, s.done, s.last_step = shape, req.episode, 0, False, None
        o, image = self._obs(s, req.session)
        self._describe(o, s.env)
        self.counters['resets'] += 1
        return o.SerializeToString(), image

    def step(self, sender, req):
        s = self.sessions.get((sender, req.session))
        if s is None:
            raise RequestError(ESTATE, 'unknown session (never reset, expired, or the server '
                               'restarted): reset first')
        if req.episode != s.episode:
            raise RequestError(ESTATE, 'episode %d is not the current one (%d): reset first'
                               % (req.episode, s.episode))
        key = (req.episode, req.step, req.action)
        if s.last_step and s.last_step[0] == key and req.step + 1 == s.steps:
            self.counters['steps_replayed'] += 1
            return s.last_step[1], s.last_step[2]
        if req.step != s.steps:
            raise RequestError(ESTATE, 'step %d is out of order: the episode has had %d'
                               % (req.step, s.steps))
        if s.done:
            raise RequestError(ESTATE, 'the episode is over (after %d steps)' % s.steps)
        if req.action >= len(s.env.actions):
            raise RequestError(EINVAL, 'action %d outside 0..%d'
                               % (req.action, len(s.env.actions) - 1))
        reward, legal, terminated, truncated = s.env.step(req.action)
        s.steps += 1
        s.done = bool(terminated or truncated)
        o, image = self._obs(s, req.session)
        o.action, o.action_legal, o.reward = req.action, bool(legal), float(reward)
        o.terminated, o.truncated, o.done = bool(terminated), bool(truncated), s.done
        body = o.SerializeToString()
        s.last_step = (key, body, image)
        self.counters['steps'] += 1
        return body, image

    def _expire(self):
        now = time.monotonic()
        while self.sessions:
            key, s = next(iter(self.sessions.items()))
            if len(self.sessions) <= self.max_sessions and now - s.touched <= self.idle_s:
                break
            del self.sessions[key]
            self.counters['sessions_dropped'] += 1

    def handle(self, frames):
        """One request without its routing id -> reply frames, or None to
        drop it."""
        h, body, why = check_request(frames)
        if h is None:
            self.counters['rejected_' + why] += 1
            return None
        rid = h.request_id
        try:
            if body is None:
                raise RequestError(EINVAL, 'this env server answers env_reset and env_step only '
                                   '(got message type %d)' % h.type)
            if h.type == MSG_ENV_RESET:
                out, image = self.reset(h.sender_id, body)
            else:
                out, image = self.step(h.sender_id, body)
            key = (h.sender_id, body.session)
            if key in self.sessions:
                self.sessions[key].touched = time.monotonic()
                self.sessions.move_to_end(key)
            self._expire()
            return [encode_header(self.server_id, MSG_ENV_OBS, rid, 1), out, image]
        except RequestError as e:
            self.counters['errors_sent'] += 1
            err = Error(code=e.code, message=str(e)[:1000])
            return [encode_header(self.server_id, MSG_ERROR, rid), err.SerializeToString()]


# ==== CURVE (common/security.h) ====

def _key_lines(path, limit):
    with open(path, 'rb') as f:
        text = f.read(limit + 1)
    if len(text) > limit:
        raise ValueError('%s: more than %d bytes' % (path, limit))
    for n, line in enumerate(text.decode('ascii').splitlines(), 1):
        line = line.strip()
        if line and not line.startswith('#'):
            yield n, line


def _z85_key(path, n, text):
    try:
        if len(text) == 40 and len(zmq.utils.z85.decode(text)) == 32:
            return text.encode()
    except (KeyError, ValueError, TypeError):
        pass
    raise ValueError('%s:%d: not a Z85 key (40 characters)' % (path, n))


def read_secret_key(path):
    """The secret key of a gtrt NAME.key file ("secret-key = Z85" line)."""
    for n, line in _key_lines(path, 4096):
        name, eq, value = line.partition('=')
        if eq and name.strip() == 'secret-key':
            return _z85_key(path, n, value.strip())
    raise ValueError('%s: no secret-key line (give the server key pair, NAME.key)' % path)


def read_allow(path):
    """Z85 client keys of an allow-list: one per line, '#' comments."""
    keys = set()
    for n, line in _key_lines(path, 4 << 20):
        words = line.split(None, 1)
        if len(words) > 1 and not words[1].startswith('#'):
            raise ValueError('%s:%d: one key per line' % (path, n))
        keys.add(_z85_key(path, n, words[0]))
    return keys


def _curve_server(ctx, sock, server_key, allow, log):
    """Make `sock` a CURVE server that admits the keys of `allow` (pyzmq's
    own ZAP handler, in a thread); returns the handler to stop."""
    import zmq.auth.thread
    secret, allowed = read_secret_key(server_key), read_allow(allow)

    class Allow:
        def callback(self, domain, key):
            if key in allowed:
                return True
            print('envserver: refused client key %s' % key.decode(), file=log, flush=True)
            return False

    auth = zmq.auth.thread.ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback('gtrt', credentials_provider=Allow())
    sock.curve_secretkey = secret
    sock.curve_publickey = zmq.curve_public(secret)
    sock.curve_server = True
    sock.zap_domain = b'gtrt'
    return auth


# ==== the socket loop ====

def serve(make_env, bind, server_id='envserver', max_sessions=1024, idle_s=600.0, log=None,
          server_key=None, allow=None):
    """Serve until SIGINT or SIGTERM. Prints 'READY <endpoint>' on stdout
    once bound (with the real port when `bind` ends in ':*'). With
    server_key (the cluster's server.key) and allow (the allow-list) it
    serves CURVE clients whose key is allowed, and nobody else."""
    log = log or sys.stderr
    server = EnvServer(make_env, server_id, max_sessions, idle_s)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 10)  # requests are tiny
    if bool(server_key) != bool(allow):
        raise ValueError('CURVE needs both the server key pair and the allow-list')
    auth = _curve_server(ctx, sock, server_key, allow, log) if server_key else None
    sock.bind(bind)
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    print('READY %s' % endpoint, flush=True)
    print('envserver %s: serving on %s' % (server_id, endpoint), file=log, flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    try:
        while not stop:
            if not poller.poll(200):
                continue
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) < 2 or len(frames) > MAX_FRAMES + 1:
                    server.counters['rejected_bad_frames'] += 1
                    continue
                reply = server.handle(frames[1:])
                if reply is not None:
                    try:
                        sock.send_multipart([frames[0]] + reply, zmq.NOBLOCK)
                    except zmq.ZMQError:
                        server.counters['tx_dropped'] += 1
    finally:
        sock.close(0)
        if auth:
            auth.stop()
        ctx.term()
        print('envserver %s: stopped; %s' % (server_id, dict(sorted(server.counters.items()))),
              file=log, flush=True)
