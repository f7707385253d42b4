#!/usr/bin/env python3
"""Writes a few valid encodings of each object kind to seeds/<target>/.

The layouts follow src/object/{tree,commit,manifest}.rs: little-endian integers,
a 4-byte magic and a version byte of 1. Run from the fuzz/ directory:

    python3 gen_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def oid(n):
    return bytes([n]) * 32


def tree(entries):
    # entries: (kind, name, id, size), already in canonical order
    out = b"bmtr" + b"\x01" + struct.pack("<I", len(entries))
    for kind, name, i, size in entries:
        nb = name.encode()
        out += bytes([kind]) + struct.pack("<H", len(nb)) + nb + i + struct.pack("<Q", size)
    return out


def commit(tree_id, parents, ts, client, msg, baseline=None):
    out = b"bmcm" + b"\x01" + tree_id + bytes([len(parents)])
    for p in parents:
        out += p
    cb = client.encode()
    mb = msg.encode()
    out += struct.pack("<q", ts) + bytes([len(cb)]) + cb + struct.pack("<I", len(mb)) + mb
    if baseline is None:
        out += b"\x00"
    else:
        remote, snap, man = baseline
        rb = remote.encode()
        out += b"\x01" + struct.pack("<H", len(rb)) + rb
        out += b"\x00" if snap is None else b"\x01" + struct.pack("<Q", snap)
        out += man
    return out


def manifest(entries):
    # entries: (path, key, etag, size, content-or-None), in byte order of path
    out = b"bmmf" + b"\x01" + struct.pack("<I", len(entries))
    for path, key, etag, size, content in entries:
        pb, kb, eb = path.encode(), key.encode(), etag.encode()
        out += struct.pack("<H", len(pb)) + pb + struct.pack("<H", len(kb)) + kb
        out += bytes([len(eb)]) + eb + struct.pack("<Q", size)
        out += b"\x00" if content is None else b"\x01" + content
    return out


SEEDS = {
    "tree": {
        "empty": tree([]),
        "one-file": tree([(1, "note.md", oid(1), 12)]),
        "mixed": tree(sorted([
            (1, "a.md", oid(1), 3),
            (4, "a", oid(2), 100),
            (3, "link", oid(4), 7),
            (2, "run.sh", oid(3), 40),
            (1, "caf\u00e9", oid(5), 0),
        ], key=lambda e: e[1].encode() + (b"/" if e[0] == 4 else b""))),
    },
    "commit": {
        "root": commit(oid(1), [], 0, "laptop", ""),
        "merge": commit(oid(2), [oid(3), oid(4)], 1_764_000_000_000_000_000, "desk-1", "merge remote"),
        "synced": commit(oid(5), [oid(6)], -1, "a.b_c-d", "sync\n", ("s3://bucket/prefix", 1_764_000_000_123_456_789, oid(7))),
        "synced-nosnap": commit(oid(8), [], 42, "x", "m", ("s3://b", None, oid(9))),
    },
    "manifest": {
        "empty": manifest([]),
        "two": manifest([
            ("a/b.md", "prefix/a/b.md", '"0123abcd"', 5, oid(1)),
            ("c.md", "prefix/c.md", "", 0, None),
        ]),
    },
    "id": {
        "full-lower": ("ab" * 32).encode(),
        "full-mixed": ("Ab" * 32).encode(),
        "prefix4": b"abcd",
        "prefix-odd": b"0123456",
        "too-short": b"abc",
    },
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
