"""A Python client of the gtrt teacher service: token log-probabilities of
given answers (logits requests), answers written by the merged teacher
(generate requests) and the teacher's status, over ZeroMQ, with the
messages of proto/gtrt.proto. The C client is common/tclient.h; this one
behaves the same way.

Needs only Debian's python3-zmq and python3-protobuf (no protoc for Python):
the few messages spoken here are described below as a FileDescriptorProto
and turned into classes at run time. Their field numbers and wire types
must match proto/gtrt.proto; tests/python/test_teacher_client.py checks them
against the descriptor that protoc-c builds from the .proto. Enum fields are
read as uint32 (the same varint on the wire), so a value this table does not
name is still seen, and refused.

Envelope (common/wire.h): a DEALER sends [Header][body][payload frames...];
the Header carries schema_version 1, role ROLE_CLIENT, a sender id, the
message type, a fresh request id (echoed in the reply) and the number of
payload frames. Images travel one payload frame per sequence, uint8
C x H x W with byte = round(255 * value), exactly as the actors quantise.

Teachers and retries (Lazy Pirate): requests go round robin over the
given endpoints; an attempt that is not answered within timeout_ms, or
that a teacher refuses as too old for min_version (error code 11) or busy
(12), or answers with a reply that does not fit the request, is retried on
another teacher (a socket that timed out is closed and reopened; a teacher
that timed out is skipped for cooldown_ms while others are left), up to
`attempts` in all; then TeacherUnavailable says what each teacher did. Any
other error reply raises TeacherError at once with the teacher's message.

Every reply is checked before use (wire_decode's rules for the envelope,
then counts, modes, positions and frame sizes against the request).

    from gtrt_teacher import TeacherClient, Seq
    c = TeacherClient('tcp://127.0.0.1:5556')
    r = c.logits([Seq(prompt=[...], answer=[...], image=img_bytes, shape=(3, 32, 64))])
    r.values[0]          # one row per answer position: [logprob] (sampled)
    r.teacher_version

CURVE (common/security.h): with server_key (the cluster's server.pub or
server.key) and client_key (this client's own NAME.key from `gtrt keygen`,
whose NAME.pub is in the teacher's security.allow), every socket is a
CURVE client; without them it speaks plaintext.

CLI: python3 gtrt_teacher.py --help
"""

import argparse
import json
import os
import re
import struct
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

SCHEMA_VERSION = 1
ROLE_CLIENT = 4
ROLE_MAX = 4
MSG_STATUS_REQUEST = 4
MSG_STATUS_REPLY = 5
MSG_ERROR = 6
MSG_LOGITS_REQUEST = 48
MSG_LOGITS_REPLY = 49
MSG_GENERATE_REQUEST = 50
MSG_GENERATE_REPLY = 51
MAX_HEADER_BYTES = 512   # WIRE_MAX_HEADER_BYTES
MAX_FRAMES = 64          # WIRE_MAX_FRAMES
MAX_SEQS = MAX_FRAMES - 2
MAX_NEW = 4096           # longest answer a teacher writes
MAX_VOCAB = 1 << 20
# Largest body per message type (common/wire.c).
MAX_BODY = {MSG_STATUS_REPLY: 4 << 20, MSG_ERROR: 16 << 10, MSG_LOGITS_REQUEST: 1 << 20,
            MSG_LOGITS_REPLY: 1 << 20, MSG_GENERATE_REQUEST: 1 << 20,
            MSG_GENERATE_REPLY: 1 << 20}
CODE_VERSION, CODE_BUSY = 11, 12
MODES = {'sampled': 0, 'topk': 1, 'full': 2}
KINDS = ('format', 'thought', 'action')

_ID_RE = re.compile(r'^[A-Za-z0-9._:@-]{1,64}$')

# ==== messages ====

_T = descriptor_pb2.FieldDescriptorProto
# name -> [(field, number, type, repeated)]; type is a scalar name or a
# message name. Enums are uint32 here (see the module text).
SCHEMA = {
    'Header': [('schema_version', 1, 'uint32', False), ('role', 2, 'uint32', False),
               ('sender_id', 3, 'string', False), ('type', 4, 'uint32', False),
               ('request_id', 5, 'uint64', False), ('sent_unix_ms', 6, 'uint64', False),
               ('payload_frames', 7, 'uint32', False)],
    'Error': [('code', 1, 'uint32', False), ('message', 2, 'string', False)],
    'PeerInfo': [('id', 1, 'string', False), ('role', 2, 'uint32', False),
                 ('software_version', 3, 'string', False), ('model_version', 4, 'uint64', False),
                 ('host', 5, 'string', False), ('pid', 6, 'uint32', False),
                 ('uptime_ms', 7, 'uint64', False), ('endpoint', 8, 'string', False)],
    'PeerStatus': [('info', 1, 'PeerInfo', False), ('alive', 2, 'bool', False),
                   ('last_seen_ms_ago', 3, 'uint64', False),
                   ('first_seen_ms_ago', 4, 'uint64', False)],
    'Counter': [('name', 1, 'string', False), ('value', 2, 'uint64', False)],
    'Label': [('name', 1, 'string', False), ('value', 2, 'string', False)],
    'StatusRequest': [],
    'StatusReply': [('self', 1, 'PeerInfo', False), ('peers', 2, 'PeerStatus', True),
                    ('counters', 3, 'Counter', True), ('labels', 4, 'Label', True)],
    'TeacherSeq': [('prompt', 1, 'uint32', True), ('answer', 2, 'uint32', True),
                   ('image_c', 3, 'uint32', False), ('image_h', 4, 'uint32', False),
                   ('image_w', 5, 'uint32', False), ('score_begin', 6, 'uint32', False),
                   ('score_end', 7, 'uint32', False)],
    'LogitsRequest': [('mode', 1, 'uint32', False), ('temperature', 2, 'float', False),
                      ('top_k', 3, 'uint32', False), ('float_format', 4, 'uint32', False),
                      ('min_version', 5, 'uint64', False), ('seqs', 6, 'TeacherSeq', True)],
    'LogitsResult': [('positions', 1, 'uint32', False), ('topk_ids', 2, 'uint32', True)],
    'LogitsReply': [('teacher_version', 1, 'uint64', False), ('mode', 2, 'uint32', False),
                    ('float_format', 3, 'uint32', False), ('top_k', 4, 'uint32', False),
                    ('vocab', 5, 'uint32', False), ('results', 6, 'LogitsResult', True)],
    'GenerateRequest': [('temperature', 1, 'float', False), ('top_k', 2, 'uint32', False),
                        ('max_new', 3, 'uint32', False), ('min_version', 4, 'uint64', False),
                        ('seed', 5, 'uint64', False), ('seqs', 6, 'TeacherSeq', True)],
    'GenerateResult': [('answer', 1, 'uint32', True), ('kind', 2, 'bytes', False),
                       ('logprob', 3, 'float', True)],
    'GenerateReply': [('teacher_version', 1, 'uint64', False),
                      ('results', 2, 'GenerateResult', True)],
}

_SCALARS = {'uint32': _T.TYPE_UINT32, 'uint64': _T.TYPE_UINT64, 'bool': _T.TYPE_BOOL,
            'float': _T.TYPE_FLOAT, 'string': _T.TYPE_STRING, 'bytes': _T.TYPE_BYTES}


def _build_messages():
    f = descriptor_pb2.FileDescriptorProto(name='gtrt_teacher_client.proto', package='gtrt',
                                           syntax='proto2')
    for msg, fields in SCHEMA.items():
        m = f.message_type.add(name=msg)
        for name, number, typ, repeated in fields:
            fd = m.field.add(name=name, number=number,
                             label=_T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL)
            if typ in _SCALARS:
                fd.type = _SCALARS[typ]
                if repeated and typ not in ('string', 'bytes'):
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
BODIES = {MSG_STATUS_REPLY: MESSAGES['StatusReply'], MSG_ERROR: Error,
          MSG_LOGITS_REPLY: MESSAGES['LogitsReply'],
          MSG_GENERATE_REPLY: MESSAGES['GenerateReply']}

# ==== errors and results ====


class TeacherError(Exception):
    """A teacher refused the request itself (bad request): code and message."""

    def __init__(self, code, message, endpoint):
        super().__init__('teacher %s refused the request: %s' % (endpoint, message))
        self.code = code
        self.message = message
        self.endpoint = endpoint


class TeacherUnavailable(Exception):
    """No teacher served the request within the attempts (what each did)."""

    def __init__(self, message, problems):
        super().__init__(message)
        self.problems = problems


class BadReply(Exception):
    """A reply that does not fit its request (internal: try another teacher)."""


class Seq:
    """One sequence: prompt ids (ending in <bos>), answer ids (logits
    requests), the image as uint8 C x H x W bytes (or anything with
    tobytes(), e.g. a NumPy uint8 array) and its shape (C, H, W), and the
    answer positions to score, [score_begin, score_end) (0, 0: all)."""

    def __init__(self, prompt, image, shape, answer=(), score_begin=0, score_end=0):
        self.prompt = [int(x) for x in prompt]
        self.answer = [int(x) for x in answer]
        self.image = image.tobytes() if hasattr(image, 'tobytes') else bytes(image)
        self.shape = tuple(int(x) for x in shape)
        self.score_begin = int(score_begin)
        self.score_end = int(score_end)

    def positions(self):
        end = self.score_end or len(self.answer)
        return end - self.score_begin


class LogitsResult:
    """values[i]: the rows of sequence i, one per scored position, each a
    list of width floats (1 sampled, k top-k, vocab full; float16 replies
    converted back); ids[i]: the top-k ids per row (likeliest first), else
    None."""

    def __init__(self, teacher_version, endpoint, mode, vocab, top_k, values, ids):
        self.teacher_version = teacher_version
        self.endpoint = endpoint
        self.mode = mode
        self.vocab = vocab
        self.top_k = top_k
        self.values = values
        self.ids = ids


class Answer:
    """One written answer: ids, kind per token (0 format, 1 thought,
    2 action) and each token's sampling logprob."""

    def __init__(self, ids, kind, logprob):
        self.ids = ids
        self.kind = kind
        self.logprob = logprob


class GenerateResult:
    def __init__(self, teacher_version, endpoint, answers):
        self.teacher_version = teacher_version
        self.endpoint = endpoint
        self.answers = answers

# ==== the envelope ====


def encode_header(sender_id, msg_type, request_id, payload_frames=0):
    h = Header(schema_version=SCHEMA_VERSION, role=ROLE_CLIENT, sender_id=sender_id,
               type=msg_type, request_id=request_id, sent_unix_ms=int(time.time() * 1000))
    if payload_frames:
        h.payload_frames = payload_frames
    return h.SerializeToString()


def decode(frames):
    """[Header][body][payload...] checked as wire_decode does: returns
    (header, body, payload frames), or None for a message to drop."""
    if not 2 <= len(frames) <= MAX_FRAMES or not 0 < len(frames[0]) <= MAX_HEADER_BYTES:
        return None
    h = Header()
    try:
        h.ParseFromString(frames[0])
    except Exception:  # DecodeError, or a UnicodeDecodeError on some versions
        return None
    if h.schema_version != SCHEMA_VERSION or not 1 <= h.role <= ROLE_MAX:
        return None
    if not _ID_RE.match(h.sender_id) or h.type not in BODIES:
        return None
    if h.payload_frames != len(frames) - 2 or len(frames[1]) > MAX_BODY[h.type]:
        return None
    body = BODIES[h.type]()
    try:
        body.ParseFromString(frames[1])
    except Exception:
        return None
    return h, body, frames[2:]

# ==== reply checks ====


def _check_logits(body, payload, seqs, mode, top_k, f16, min_version):
    if body.teacher_version < min_version:
        raise BadReply('teacher version %d, the request wants at least %d'
                       % (body.teacher_version, min_version))
    if body.mode != mode or body.float_format != int(f16):
        raise BadReply('mode %d / float format %d, asked for %d / %d'
                       % (body.mode, body.float_format, mode, int(f16)))
    if not 1 <= body.vocab <= MAX_VOCAB:
        raise BadReply('vocabulary size %d' % body.vocab)
    width = 1
    if mode == MODES['topk']:
        if body.top_k != top_k or top_k > body.vocab:
            raise BadReply('top_k %d, asked for %d' % (body.top_k, top_k))
        width = top_k
    elif mode == MODES['full']:
        width = body.vocab
    if len(body.results) != len(seqs) or len(payload) != len(seqs):
        raise BadReply('%d results in %d frames for %d sequences'
                       % (len(body.results), len(payload), len(seqs)))
    for i, (res, frame, s) in enumerate(zip(body.results, payload, seqs)):
        n = s.positions()
        if res.positions != n:
            raise BadReply('sequence %d: %d positions, asked for %d' % (i, res.positions, n))
        if len(frame) != n * width * (2 if f16 else 4):
            raise BadReply('sequence %d: %d value bytes, expected %d'
                           % (i, len(frame), n * width * (2 if f16 else 4)))
        n_ids = n * width if mode == MODES['topk'] else 0
        if len(res.topk_ids) != n_ids or any(x >= body.vocab for x in res.topk_ids):
            raise BadReply('sequence %d: top-k ids do not fit' % i)
    return width


def _rows(flat, width):
    return [flat[p:p + width] for p in range(0, len(flat), width)]


def _take_logits(body, payload, seqs, mode, top_k, f16, min_version, endpoint):
    width = _check_logits(body, payload, seqs, mode, top_k, f16, min_version)
    values, ids = [], []
    for res, frame in zip(body.results, payload):
        n = len(frame) // (2 if f16 else 4)
        flat = list(struct.unpack('<%d%s' % (n, 'e' if f16 else 'f'), frame))
        values.append(_rows(flat, width))
        ids.append(_rows(list(res.topk_ids), width) if mode == MODES['topk'] else None)
    return LogitsResult(body.teacher_version, endpoint, mode, body.vocab,
                        top_k if mode == MODES['topk'] else 0, values, ids)


def _take_generate(body, payload, seqs, max_new, min_version, endpoint):
    if body.teacher_version < min_version:
        raise BadReply('teacher version %d, the request wants at least %d'
                       % (body.teacher_version, min_version))
    if len(body.results) != len(seqs) or payload:
        raise BadReply('%d results for %d sequences' % (len(body.results), len(seqs)))
    answers = []
    for i, res in enumerate(body.results):
        n = len(res.answer)
        if n > (max_new or MAX_NEW) or len(res.logprob) != n or len(res.kind) != n:
            raise BadReply('sequence %d: %d tokens, %d logprobs, %d kinds'
                           % (i, n, len(res.logprob), len(res.kind)))
        if any(k > 2 for k in res.kind) or any(x >= MAX_VOCAB for x in res.answer):
            raise BadReply('sequence %d: token ids or kinds out of range' % i)
        answers.append(Answer(list(res.answer), list(res.kind), list(res.logprob)))
    return GenerateResult(body.teacher_version, endpoint, answers)

# ==== the client ====


def read_key(path):
    """(public, secret) Z85 keys (bytes) of a gtrt key file: NAME.key holds
    "public-key = ..." and "secret-key = ..." lines, NAME.pub the public key
    alone (secret None). The C reader (security_key_read) is the reference;
    this one checks less (the mode, the pair's match)."""
    public = secret = None
    with open(path, 'rb') as f:
        text = f.read(4097)
    if len(text) > 4096:
        raise ValueError('%s: too big for a key file' % path)
    for n, line in enumerate(text.decode('ascii').splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        name, eq, value = line.partition('=')
        name, value = (name.strip(), value.strip()) if eq else ('public-key', line)
        try:
            ok = name in ('public-key', 'secret-key') and len(zmq.utils.z85.decode(value)) == 32
        except (KeyError, ValueError, TypeError):  # characters outside Z85
            ok = False
        if not ok:
            raise ValueError('%s:%d: not a Z85 key line' % (path, n))
        if name == 'public-key':
            public = value.encode()
        else:
            secret = value.encode()
    if secret and not public:
        public = zmq.curve_public(secret)
    if not public:
        raise ValueError('%s: no key in the file' % path)
    return public, secret


class _Teacher:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.sock = None
        self.skip_until = 0.0


class TeacherClient:
    """Requests over one or more teachers (a list or 'ep1,ep2'). One
    client per thread, as with ZeroMQ sockets."""

    def __init__(self, endpoints, timeout_ms=2000, attempts=3, cooldown_ms=10000,
                 sender_id=None, max_msg_bytes=4 << 20, context=None, server_key=None,
                 client_key=None):
        if isinstance(endpoints, str):
            endpoints = endpoints.split(',')
        endpoints = [e.strip() for e in endpoints]
        if not endpoints or not all(endpoints) or len(endpoints) > 16:
            raise ValueError('give 1..16 teacher endpoints, none empty')
        if timeout_ms < 1 or attempts < 1:
            raise ValueError('timeout_ms and attempts must be >= 1')
        self.sender_id = sender_id or 'pyclient-%d' % os.getpid()
        if not _ID_RE.match(self.sender_id):
            raise ValueError('bad sender id %r (1..64 of [A-Za-z0-9._:@-])' % self.sender_id)
        self.timeout_ms, self.attempts, self.cooldown_ms = timeout_ms, attempts, cooldown_ms
        self.max_msg_bytes = max_msg_bytes
        self.curve = None
        if server_key:
            if not client_key:
                raise ValueError('server_key needs client_key: this client\'s own key pair')
            pub, sec = read_key(client_key)
            if not sec:
                raise ValueError('%s holds no secret key: give the .key file' % client_key)
            self.curve = (read_key(server_key)[0], pub, sec)
        self.ctx = context or zmq.Context.instance()
        self.teachers = [_Teacher(e) for e in endpoints]
        self.next = 0
        # Ids from the clock so two runs never reuse one.
        self.next_request_id = int(time.time() * 1000) << 16
        self.stats = dict(calls=0, attempts=0, timeouts=0, version_refused=0, busy_refused=0,
                          bad_replies=0)

    def close(self):
        for t in self.teachers:
            if t.sock is not None:
                t.sock.close(0)
                t.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- requests ----

    def logits(self, seqs, mode='sampled', temperature=0.0, top_k=0, f16=False, min_version=0):
        """Log-probabilities of each sequence's answer at `temperature`
        (0: 1): mode 'sampled' (the given tokens), 'topk' (top_k likeliest
        per position) or 'full' (every token). Returns a LogitsResult."""
        m = MODES[mode] if isinstance(mode, str) else int(mode)
        body = MESSAGES['LogitsRequest'](mode=m, temperature=float(temperature),
                                         float_format=int(bool(f16)), min_version=min_version)
        if m == MODES['topk']:
            body.top_k = int(top_k)
        self._add_seqs(body, seqs, True)
        return self._call(MSG_LOGITS_REQUEST, body, [s.image for s in seqs],
                          lambda b, p, ep: _take_logits(b, p, seqs, m, int(top_k), bool(f16),
                                                        min_version, ep))

    def generate(self, seqs, temperature=None, top_k=None, max_new=None, seed=0, min_version=0):
        """Answers written by the teacher for each prompt and image (None:
        the teacher's defaults). Returns a GenerateResult."""
        body = MESSAGES['GenerateRequest'](seed=seed, min_version=min_version)
        if temperature is not None:
            body.temperature = float(temperature)
        if top_k is not None:
            body.top_k = int(top_k)
        if max_new is not None:
            body.max_new = int(max_new)
        self._add_seqs(body, seqs, False)
        return self._call(MSG_GENERATE_REQUEST, body, [s.image for s in seqs],
                          lambda b, p, ep: _take_generate(b, p, seqs, max_new, min_version, ep))

    def status(self):
        """The first answering teacher's status: {'self': ..., 'counters':
        {...}, 'labels': {...}, 'endpoint': ...}."""
        def take(b, p, ep):
            if not isinstance(b, MESSAGES['StatusReply']):
                raise BadReply('not a status reply')
            return {'endpoint': ep, 'self': {'id': b.self.id, 'model_version': b.self.model_version},
                    'counters': {c.name: c.value for c in b.counters},
                    'labels': {l.name: l.value for l in b.labels}}
        return self._call(MSG_STATUS_REQUEST, MESSAGES['StatusRequest'](), [], take)

    @staticmethod
    def _add_seqs(body, seqs, answer):
        if not 1 <= len(seqs) <= MAX_SEQS:
            raise ValueError('%d sequences in one request: 1..%d are possible'
                             % (len(seqs), MAX_SEQS))
        for i, s in enumerate(seqs):
            c, h, w = s.shape
            if len(s.image) != c * h * w or not s.prompt or (answer and not s.answer):
                raise ValueError('sequence %d: image of %d bytes for shape %s, %d prompt and '
                                 '%d answer tokens' % (i, len(s.image), s.shape, len(s.prompt),
                                                       len(s.answer)))
            if answer and not 0 <= s.score_begin < s.score_begin + s.positions() <= len(s.answer):
                raise ValueError('sequence %d: score range outside its answer' % i)
            t = body.seqs.add(prompt=s.prompt, image_c=c, image_h=h, image_w=w)
            if answer:
                t.answer.extend(s.answer)
                t.score_begin, t.score_end = s.score_begin, s.score_end
        if body.ByteSize() > 1 << 20:
            raise ValueError('the request would take %d bytes, more than a teacher takes'
                             % body.ByteSize())

    # ---- one call over the teachers ----

    def _pick(self, refused):
        now = time.monotonic()
        n = len(self.teachers)
        order = [(self.next + k) % n for k in range(n)]
        live = [i for i in order if i not in refused and self.teachers[i].skip_until <= now]
        cool = sorted((i for i in order if i not in refused),
                      key=lambda i: self.teachers[i].skip_until)
        i = (live or cool or order)[0]
        self.next = (i + 1) % n
        return self.teachers[i], i

    def _socket(self, t):
        if t.sock is None:
            t.sock = self.ctx.socket(zmq.DEALER)
            t.sock.setsockopt(zmq.LINGER, 0)
            t.sock.setsockopt(zmq.MAXMSGSIZE, self.max_msg_bytes)
            if self.curve:
                t.sock.curve_serverkey, t.sock.curve_publickey, t.sock.curve_secretkey = self.curve
            t.sock.connect(t.endpoint)
        return t.sock

    def _attempt(self, t, msg_type, body_bytes, payload):
        """Send once and wait for the reply to this request id: returns the
        decoded (header, body, payload), or None after timeout_ms (the
        socket is then closed: a DEALER that lost its peer may hold stale
        messages)."""
        self.next_request_id += 1
        rid = self.next_request_id
        sock = self._socket(t)
        frames = [encode_header(self.sender_id, msg_type, rid, len(payload)), body_bytes] + payload
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # nothing will come back: wait out the timeout as for a lost reply
        deadline = time.monotonic() + self.timeout_ms / 1000.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                if time.monotonic() >= deadline:
                    sock.close(0)
                    t.sock = None
                    return None
                continue
            while sock.poll(0, zmq.POLLIN):
                msg = decode(sock.recv_multipart(zmq.NOBLOCK))
                if msg is not None and msg[0].request_id == rid:
                    return msg

    def _call(self, msg_type, body, payload, take):
        self.stats['calls'] += 1
        body_bytes = body.SerializeToString()
        refused, problems = set(), []
        for a in range(self.attempts):
            if a and len(refused) == len(self.teachers):  # all busy or too old: let them be
                time.sleep(min(self.timeout_ms / 10000.0, 0.1))
            t, i = self._pick(refused)
            self.stats['attempts'] += 1
            msg = self._attempt(t, msg_type, body_bytes, payload)
            if msg is None:
                self.stats['timeouts'] += 1
                t.skip_until = time.monotonic() + self.cooldown_ms / 1000.0
                problems.append('%s: no answer within %d ms' % (t.endpoint, self.timeout_ms))
                continue
            h, rep, frames = msg
            if h.type == MSG_ERROR:
                if rep.code not in (CODE_VERSION, CODE_BUSY):
                    raise TeacherError(rep.code, rep.message, t.endpoint)
                self.stats['version_refused' if rep.code == CODE_VERSION else 'busy_refused'] += 1
                refused.add(i)
                problems.append('%s: %s' % (t.endpoint, rep.message))
                continue
            try:
                out = take(rep, frames, t.endpoint)
            except BadReply as e:
                self.stats['bad_replies'] += 1
                refused.add(i)
                t.skip_until = time.monotonic() + self.cooldown_ms / 1000.0
                problems.append('%s: bad reply (%s)' % (t.endpoint, e))
                continue
            t.skip_until = 0.0
            return out
        unique = list(dict.fromkeys(problems))
        raise TeacherUnavailable('no teacher served the request in %d attempts (%d teachers): %s'
                                 % (self.attempts, len(self.teachers), '; '.join(unique)),
                                 problems)

# ==== command line ====


def _ids(text):
    return [int(x) for x in text.split(',') if x.strip()]


def _cli_logits(c, a):
    shape = tuple(_ids(a.shape))
    n = shape[0] * shape[1] * shape[2]
    image = open(a.image, 'rb').read() if a.image else bytes(n)
    seq = Seq(prompt=_ids(a.prompt), answer=_ids(a.answer), image=image, shape=shape)
    mode = 'full' if a.full else 'topk' if a.topk else 'sampled'
    r = c.logits([seq], mode=mode, temperature=a.temperature, top_k=a.topk or 0, f16=a.f16,
                 min_version=a.min_version)
    out = {'teacher': r.endpoint, 'teacher_version': r.teacher_version, 'mode': mode,
           'vocab': r.vocab, 'values': r.values[0]}
    if r.ids[0] is not None:
        out['ids'] = r.ids[0]
    return out


def _cli_generate(c, a):
    shape = tuple(_ids(a.shape))
    image = open(a.image, 'rb').read() if a.image else bytes(shape[0] * shape[1] * shape[2])
    r = c.generate([Seq(prompt=_ids(a.prompt), image=image, shape=shape)],
                   temperature=a.temperature if a.temperature > 0 else None,
                   top_k=a.topk, max_new=a.max_new, seed=a.seed, min_version=a.min_version)
    ans = r.answers[0]
    return {'teacher': r.endpoint, 'teacher_version': r.teacher_version, 'ids': ans.ids,
            'kind': [KINDS[k] for k in ans.kind], 'logprob': ans.logprob}


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Ask a gtrt teacher for logprobs, answers or its status; prints JSON.',
        epilog='example: gtrt logits --env points24 --seed 3 --json --save-obs obs.u8 gives '
               'prompt_ids, answer_ids and the image; then\n  python3 gtrt_teacher.py '
               '--teacher tcp://127.0.0.1:5556 logits --prompt 72,28,...,1 '
               '--answer 54,14,...,2 --image obs.u8 --shape 3,32,64 --topk 3',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--teacher', required=True, help='endpoint(s), comma-separated')
    p.add_argument('--timeout-ms', type=int, default=2000, help='one attempt (default 2000)')
    p.add_argument('--attempts', type=int, default=3, help='over all teachers (default 3)')
    p.add_argument('--server-key', help="CURVE: the cluster's server.pub (or .key)")
    p.add_argument('--client-key', help='CURVE: this client\'s own NAME.key')
    sub = p.add_subparsers(dest='cmd', required=True)
    sub.add_parser('status', help="the teacher's counters and labels")
    for name in ('logits', 'generate'):
        q = sub.add_parser(name, help='score an answer' if name == 'logits' else 'write one')
        q.add_argument('--prompt', required=True, help='prompt ids, comma-separated (end in 1)')
        q.add_argument('--shape', default='3,32,64', help='image C,H,W (default 3,32,64)')
        q.add_argument('--image', help='raw uint8 C*H*W file (default: a black image)')
        q.add_argument('--temperature', type=float, default=0.0)
        q.add_argument('--min-version', type=int, default=0)
        if name == 'logits':
            q.add_argument('--answer', required=True, help='answer ids, comma-separated')
            q.add_argument('--topk', type=int, default=0, help='the K likeliest per position')
            q.add_argument('--full', action='store_true', help='the whole distribution')
            q.add_argument('--f16', action='store_true', help='values as float16')
        else:
            q.add_argument('--topk', type=int, default=None, help='sample among K (0: all)')
            q.add_argument('--max-new', type=int, default=None)
            q.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    try:
        with TeacherClient(a.teacher, timeout_ms=a.timeout_ms, attempts=a.attempts,
                           server_key=a.server_key, client_key=a.client_key) as c:
            if a.cmd == 'status':
                out = c.status()
            elif a.cmd == 'logits':
                out = _cli_logits(c, a)
            else:
                out = _cli_generate(c, a)
    except (TeacherError, TeacherUnavailable, ValueError, OSError) as e:
        print('gtrt_teacher: %s' % e, file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
