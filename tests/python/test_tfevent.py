"""Independent check of gtrt's TensorBoard event files.

tool_tfevent_write (C) writes a run's metrics through the metrics sink. This
script reads the event file with its own TFRecord reader and its own
CRC-32C, decodes every record twice -- with a hand-written protobuf wire
decoder, and with python3-protobuf against a schema built here from
TensorFlow's event.proto / summary.proto field numbers, oneofs included --
and checks the file name, the file_version record, steps, tags and values,
and that they agree with metrics.jsonl. TensorBoard itself reads files with
exactly these rules, so a file that passes here is one `tensorboard
--logdir` can show. Exits nonzero on any mismatch."""
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile

# ---- CRC-32C (Castagnoli), bit by bit: deliberately not the C table ----


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """Every record of a TFRecord file; raises on any framing error."""
    with open(path, "rb") as f:
        blob = f.read()
    records, off = [], 0
    while off < len(blob):
        if len(blob) - off < 12:
            raise ValueError("truncated header at offset %d" % off)
        head = blob[off:off + 8]
        (length,) = struct.unpack("<Q", head)
        (len_crc,) = struct.unpack("<I", blob[off + 8:off + 12])
        if len_crc != masked_crc(head):
            raise ValueError("length CRC mismatch at offset %d" % off)
        data = blob[off + 12:off + 12 + length]
        foot = blob[off + 12 + length:off + 16 + length]
        if len(data) != length or len(foot) != 4:
            raise ValueError("truncated record at offset %d" % off)
        if struct.unpack("<I", foot)[0] != masked_crc(data):
            raise ValueError("data CRC mismatch at offset %d" % off)
        records.append(data)
        off += 16 + length
    return records


# ---- a minimal protobuf wire decoder ----


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """(field number, wire type, value) for every field of a message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unexpected wire type %d" % wt)
        yield num, wt, v


def decode_event(buf):
    """Event -> dict(wall_time, step, file_version, values=[(tag, value)])."""
    ev = {"wall_time": 0.0, "step": 0, "file_version": None, "values": None}
    for num, wt, v in fields(buf):
        if num == 1 and wt == 1:
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2 and wt == 0:
            ev["step"] = v - (1 << 64) if v >> 63 else v
        elif num == 3 and wt == 2:
            ev["file_version"] = v.decode("utf-8")
        elif num == 5 and wt == 2:
            ev["values"] = []
            for snum, swt, sv in fields(v):
                if snum != 1 or swt != 2:
                    continue
                tag, val = None, None
                for vnum, vwt, vv in fields(sv):
                    if vnum == 1 and vwt == 2:
                        tag = vv.decode("utf-8")
                    elif vnum == 2 and vwt == 5:
                        val = struct.unpack("<f", vv)[0]
                ev["values"].append((tag, val))
    return ev


# ---- the same schema for python3-protobuf, from TensorFlow's numbers ----


def protobuf_event_class():
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        return None
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="tfcheck/event.proto", package="tfcheck",
                                             syntax="proto3")
    ev = fdp.message_type.add(name="Event")
    ev.oneof_decl.add(name="what")
    ev.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    ev.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    ev.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL,
                 oneof_index=0)
    ev.field.add(name="summary", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                 type_name=".tfcheck.Summary", oneof_index=0)
    sm = fdp.message_type.add(name="Summary")
    val = sm.nested_type.add(name="Value")
    val.oneof_decl.add(name="value")
    val.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    val.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL,
                  oneof_index=0)
    val.field.add(name="node_name", number=7, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    sm.field.add(name="value", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                 type_name=".tfcheck.Summary.Value")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("tfcheck.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def decode_with_protobuf(cls, buf):
    m = cls()
    m.ParseFromString(buf)
    ev = {"wall_time": m.wall_time, "step": m.step, "file_version": None, "values": None}
    what = m.WhichOneof("what")
    if what == "file_version":
        ev["file_version"] = m.file_version
    elif what == "summary":
        # TensorBoard keeps a value as a scalar only if simple_value is set.
        ev["values"] = [(v.tag, v.simple_value if v.WhichOneof("value") == "simple_value" else None)
                        for v in m.summary.value]
    return ev


# ---- the expected run (see tests/tools/tool_tfevent_write.c) ----

UTF8_TAG = "test/\u00fcn\u00efc\u00f6d\u00e9"


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def expected_values(step):
    vals = [("train/success_rate", f32((step - 1) / 9.0)),
            ("train/return", f32(-1.5 + 0.25 * step)),
            ("ppo/clip_fraction", 0.0),
            ("perf/tokens_per_s", f32(1e-3 * step * step)),
            (UTF8_TAG, f32(-3.0e38))]
    if step == 1:
        vals.append(("test/nan", float("nan")))
    return vals


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else a == b


def check(tb_path, jsonl_path, failures):
    def expect(cond, what):
        if not cond:
            failures.append(what)

    name = os.path.basename(tb_path)
    m = re.fullmatch(r"events\.out\.tfevents\.(\d+)\.(.+)", name)
    expect(m is not None, "file name %r" % name)
    records = read_records(tb_path)
    expect(len(records) == 11, "11 records (version + 10 steps), got %d" % len(records))

    cls = protobuf_event_class()
    print("python3-protobuf: %s" % ("decoding with it too" if cls else "not installed, skipped"))
    events = [decode_event(r) for r in records]
    if cls:
        for i, r in enumerate(records):
            pe = decode_with_protobuf(cls, r)
            a, b = events[i], pe
            ok = (a["step"] == b["step"] and a["wall_time"] == b["wall_time"] and
                  a["file_version"] == b["file_version"] and
                  (a["values"] is None) == (b["values"] is None) and
                  all(x[0] == y[0] and same(x[1], y[1])
                      for x, y in zip(a["values"] or [], b["values"] or [])))
            expect(ok, "record %d: hand decoder %r != protobuf %r" % (i, a, b))

    first = events[0]
    expect(first["file_version"] == "brain.Event:2", "file_version %r" % first["file_version"])
    expect(first["values"] is None, "first record carries no summary")
    if m:
        expect(int(first["wall_time"]) == int(m.group(1)),
               "file name seconds %s vs first wall_time %r" % (m.group(1), first["wall_time"]))

    with open(jsonl_path) as f:
        lines = [json.loads(line) for line in f]
    expect(len(lines) == 10, "10 JSONL lines, got %d" % len(lines))

    prev_wall = first["wall_time"]
    for step in range(1, 11):
        if step >= len(events):
            break
        ev = events[step]
        expect(ev["step"] == 128 * step, "step %d: Event.step %d (env steps)" % (step, ev["step"]))
        expect(ev["wall_time"] >= prev_wall, "step %d: wall_time goes backwards" % step)
        prev_wall = ev["wall_time"]
        want = expected_values(step)
        got = ev["values"] or []
        expect([t for t, _ in got] == [t for t, _ in want],
               "step %d tags %r" % (step, [t for t, _ in got]))
        for (tag, gv), (_, wv) in zip(got, want):
            expect(gv is not None, "step %d %s: simple_value absent" % (step, tag))
            expect(gv is not None and same(wv, gv), "step %d %s: %r != %r" % (step, tag, gv, wv))
        line = lines[step - 1] if step - 1 < len(lines) else {}
        expect(line.get("step") == step and line.get("env_steps") == 128 * step,
               "JSONL line %d step/env_steps %r" % (step, line))
        expect(abs(line.get("wall_time", 0) - ev["wall_time"]) < 1e-6,
               "JSONL wall_time %r vs event %r" % (line.get("wall_time"), ev["wall_time"]))
        for tag, gv in got:
            jv = line.get(tag)
            if gv is not None and math.isnan(gv):
                expect(jv is None, "step %d %s: NaN should be null in JSONL" % (step, tag))
            else:
                expect(jv is not None and f32(jv) == gv,
                       "step %d %s: JSONL %r vs event %r" % (step, tag, jv, gv))


def self_test():
    assert crc32c(b"123456789") == 0xE3069283
    assert decode_event(b"\x10\x96\x01")["step"] == 150  # the protobuf guide's example


def main():
    self_test()
    build = os.environ.get("GTRT_BUILD_DIR")
    if not build:
        print("GTRT_BUILD_DIR is not set", file=sys.stderr)
        return 2
    tool = os.path.join(build, "tests", "tool_tfevent_write")
    failures = []
    with tempfile.TemporaryDirectory(prefix="gtrt_tfevent_") as tmp:
        out = subprocess.run([tool, tmp], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout, out.stderr, file=sys.stderr)
            return 1
        tb_path, jsonl_path = out.stdout.split("\n")[:2]
        try:
            check(tb_path, jsonl_path, failures)
        except ValueError as ex:
            failures.append("unreadable event file: %s" % ex)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("event file OK: TFRecord framing, CRC-32C, Events, tags, steps and values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
