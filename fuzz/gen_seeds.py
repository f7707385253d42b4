#!/usr/bin/env python3
"""Writes a few valid inputs for each fuzz target to seeds/<target>/.

The layouts follow src/object/{tree,commit,manifest}.rs, src/worktree/stat_cache.rs,
src/remote/file/index.rs and src/store/rows.rs (little-endian integers; objects and
stat-cache records start with a 4-byte magic and a version byte of 1), and the conflict
records' JSON in src/conflicts.rs. Run from the fuzz/ directory:

    python3 gen_seeds.py
"""
import json
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


def dir_record(tree_id, children):
    # children: (name, kind, stored, size, mtime, ctime, ino, mode, id), in tree order;
    # a subdirectory's (kind 4) stat fields are zero
    out = b"bmwt" + b"\x01" + tree_id + struct.pack("<I", len(children))
    for name, kind, stored, size, mtime, ctime, ino, mode, i in children:
        nb = name.encode()
        out += struct.pack("<H", len(nb)) + nb + bytes([kind, 1 if stored else 0])
        out += struct.pack("<QqqQI", size, mtime, ctime, ino, mode) + i
    return out


def index_record(kind, size, content, etag):
    return bytes([kind]) + struct.pack("<Q", size) + content + etag.encode()


def zstd_raw(data):
    # One zstd frame holding one raw (uncompressed) block: single-segment header with a
    # 1-byte content size, no checksum.
    assert len(data) < 256
    block = struct.pack("<I", (len(data) << 3) | 1)[:3]
    return b"\x28\xb5\x2f\xfd" + b"\x20" + bytes([len(data)]) + block + data


def inline_row(kind, data):
    return bytes([kind, 0]) + struct.pack("<Q", len(data)) + zstd_raw(data)


def conflict(path, kind, base, local, remote, copy, kept, keys, client, at):
    def hexid(n):
        return None if n is None else (bytes([n]) * 32).hex()
    return {"path": path, "kind": kind, "base": hexid(base), "local": hexid(local),
            "remote": hexid(remote), "copy": copy, "kept": hexid(kept), "keys": keys,
            "client": client, "at": at}


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
    "stat_cache": {
        "empty": dir_record(oid(1), []),
        "mixed": dir_record(oid(2), [
            ("a.md", 1, True, 12, 1_764_000_000_000_000_000, 1_764_000_000_000_000_001, 42, 0o100644, oid(3)),
            ("run.sh", 2, False, 40, -5, 7, 9, 0o100755, oid(4)),
            ("sub", 4, False, 0, 0, 0, 0, 0, oid(5)),
        ]),
    },
    "file_index": {
        "file": index_record(1, 12, oid(1), '"0123abcd"'),
        "symlink-no-etag": index_record(3, 7, oid(2), ""),
        "deleted": b"\x00",
    },
    "store_row": {
        "blob": inline_row(1, b"hello\n"),
        "empty-tree": inline_row(2, b"bmtr\x01\x00\x00\x00\x00"),
        "chunked": bytes([1, 1]) + struct.pack("<Q", (1 << 20) + 1),
    },
    "conflicts": {
        "none": b"[]",
        "two": json.dumps([
            conflict("a.md", "edit_edit", 1, 2, 3, "a.conflict-desk-20260101T000000Z.md", 2,
                     ["title"], "laptop", "2026-01-01T00:00:00Z"),
            conflict("d", "type_change", None, None, 4, None, None, [], "desk", "2026-01-02T03:04:05Z"),
        ], separators=(",", ":")).encode(),
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
