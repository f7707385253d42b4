//! The stat cache: one record per scanned directory, in the store's `worktree` table
//! (`format-spec/store.md`). A record lists the directory's children as the last scan
//! saw them, with the stat data that lets the next scan trust a file without reading it.

use crate::id::{ID_LEN, ObjectId};
use crate::object::{EntryKind, TreeEntry};

const MAGIC: &[u8; 4] = b"bmwt";
/// Flag bit: the blob is in the object store (not just hashed).
const STORED: u8 = 1;
/// Fixed bytes of one child after its name.
const CHILD_FIXED: usize = 1 + 1 + 8 + 8 + 8 + 8 + 4 + ID_LEN;

/// Stat data of a file or symlink, as compared between scans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, UNIX nanoseconds.
    pub mtime_ns: i64,
    /// Status-change time, UNIX nanoseconds.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Mode bits.
    pub mode: u32,
}

/// One child of a directory record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The tree entry this child contributed.
    pub entry: TreeEntry,
    /// Stat data (zero for subdirectories).
    pub stat: Stat,
    /// Whether the blob is in the store.
    pub stored: bool,
}

/// A directory as the last scan saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirRecord {
    /// The tree id the children make.
    pub tree: ObjectId,
    /// Children in canonical tree order.
    pub children: Vec<Child>,
}

impl DirRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41 + self.children.len() * (CHILD_FIXED + 16));
        out.extend_from_slice(MAGIC);
        out.push(1);
        out.extend_from_slice(self.tree.as_bytes());
        let n = u32::try_from(self.children.len()).expect("a directory holds fewer than 2^32 entries");
        out.extend_from_slice(&n.to_le_bytes());
        for c in &self.children {
            let len = u16::try_from(c.entry.name.len()).expect("names are at most 1024 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(c.entry.name.as_bytes());
            out.push(c.entry.kind.code());
            out.push(if c.stored { STORED } else { 0 });
            out.extend_from_slice(&c.entry.size.to_le_bytes());
            out.extend_from_slice(&c.stat.mtime_ns.to_le_bytes());
            out.extend_from_slice(&c.stat.ctime_ns.to_le_bytes());
            out.extend_from_slice(&c.stat.ino.to_le_bytes());
            out.extend_from_slice(&c.stat.mode.to_le_bytes());
            out.extend_from_slice(c.entry.id.as_bytes());
        }
        out
    }

    /// Decodes a record; `None` for anything malformed. A bad record only costs a
    /// re-hash, so it is dropped rather than reported.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Cursor(bytes);
        if r.take(4)? != MAGIC || r.take(1)? != [1] {
            return None;
        }
        let tree = ObjectId::from_bytes(r.take(ID_LEN)?.try_into().ok()?);
        let n = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        if n.checked_mul(CHILD_FIXED + 3)? > r.0.len() {
            return None;
        }
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().ok()?));
            let name = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
            let kind = EntryKind::from_code(r.take(1)?[0])?;
            let stored = r.take(1)?[0] & STORED != 0;
            let size = r.u64()?;
            let mtime_ns = r.u64()?.cast_signed();
            let ctime_ns = r.u64()?.cast_signed();
            let ino = r.u64()?;
            let mode = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
            let id = ObjectId::from_bytes(r.take(ID_LEN)?.try_into().ok()?);
            let stat =
                if kind.is_tree() { Stat::default() } else { Stat { size, mtime_ns, ctime_ns, ino, mode } };
            children.push(Child { entry: TreeEntry { name, kind, id, size }, stat, stored });
        }
        r.0.is_empty().then_some(Self { tree, children })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let rec = DirRecord {
            tree: ObjectId::for_blob(b"t"),
            children: vec![
                Child {
                    entry: TreeEntry {
                        name: "a.md".into(),
                        kind: EntryKind::File,
                        id: ObjectId::for_blob(b"a"),
                        size: 1,
                    },
                    stat: Stat { size: 1, mtime_ns: -5, ctime_ns: 7, ino: 9, mode: 0o100_644 },
                    stored: true,
                },
                Child {
                    entry: TreeEntry {
                        name: "sub".into(),
                        kind: EntryKind::Tree,
                        id: ObjectId::for_blob(b"s"),
                        size: 0,
                    },
                    stat: Stat::default(),
                    stored: false,
                },
            ],
        };
        let bytes = rec.encode();
        assert_eq!(DirRecord::decode(&bytes), Some(rec));
        for cut in 0..bytes.len() {
            assert_eq!(DirRecord::decode(&bytes[..cut]), None);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(DirRecord::decode(&long), None);
    }
}
