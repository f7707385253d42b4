//! The stat cache: one record per scanned directory, in the store's `worktree` table
//! (`format-spec/store.md`). A record lists the directory's children as the last scan
//! saw them, with the stat data that lets the next scan trust a file without reading it,
//! and (version 2) the directory's own stat data, which lets it trust the listing.

use crate::id::{ID_LEN, ObjectId};
use crate::object::{EntryKind, TreeEntry};

const MAGIC: &[u8; 4] = b"bmwt";
/// The version this build writes; version 1 (no directory stat) is still read.
const VERSION: u8 = 2;
/// Flag bit: the blob is in the object store (not just hashed).
const STORED: u8 = 1;
/// Record flag bit: the listing is complete, so it may stand in for `readdir`.
const LISTING: u8 = 1;
/// Fixed bytes of one child after its name.
const CHILD_FIXED: usize = 1 + 1 + 8 + 8 + 8 + 8 + 4 + ID_LEN;
/// Header bytes of a version 2 record: magic, version, tree, flags, directory stat, count.
const HEADER_V2: usize = 4 + 1 + ID_LEN + 1 + 8 + 8 + 8 + 4;

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

/// Stat data of a directory itself: what changes when an entry is added, removed or
/// renamed (mtime, ctime), or when the directory is replaced (inode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStat {
    /// Modification time, UNIX nanoseconds.
    pub mtime_ns: i64,
    /// Status-change time, UNIX nanoseconds.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
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
    /// `Some`: the children are the directory's complete listing (every entry synced,
    /// none skipped, reported or left out as empty, every name as on disk), taken while
    /// the directory had this stat. `None`: the listing must be read again.
    pub listing: Option<DirStat>,
    /// Children in canonical tree order.
    pub children: Vec<Child>,
}

/// One child of a record, borrowed from its bytes: no allocation per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildRef<'a> {
    /// Entry name.
    pub name: &'a str,
    /// Entry kind.
    pub kind: EntryKind,
    /// Whether the object is in the store.
    pub stored: bool,
    /// Entry size.
    pub size: u64,
    /// Stat data (zero for subdirectories).
    pub stat: Stat,
    /// Blob or subtree id.
    pub id: ObjectId,
}

impl ChildRef<'_> {
    /// The tree entry.
    pub fn entry(self) -> TreeEntry {
        TreeEntry { name: self.name.to_owned(), kind: self.kind, id: self.id, size: self.size }
    }

    /// An owned child.
    pub fn to_child(self) -> Child {
        Child { entry: self.entry(), stat: self.stat, stored: self.stored }
    }
}

/// A record read in place: checked whole once, then its children are walked without
/// copying.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The tree id the children make.
    pub tree: ObjectId,
    /// See [`DirRecord::listing`].
    pub listing: Option<DirStat>,
    count: usize,
    body: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Reads a record; `None` for anything malformed. A bad record only costs a re-hash,
    /// so it is dropped rather than reported.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut r = Cursor(bytes);
        if r.take(4)? != MAGIC {
            return None;
        }
        let version = r.take(1)?[0];
        let tree = ObjectId::from_bytes(r.take(ID_LEN)?.try_into().ok()?);
        let listing = match version {
            1 => None,
            2 => {
                let flags = r.take(1)?[0];
                let d = DirStat {
                    mtime_ns: r.u64()?.cast_signed(),
                    ctime_ns: r.u64()?.cast_signed(),
                    ino: r.u64()?,
                };
                (flags & LISTING != 0).then_some(d)
            }
            _ => return None,
        };
        let n = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        if n.checked_mul(CHILD_FIXED + 3)? > r.0.len() {
            return None;
        }
        let view = Self { tree, listing, count: n, body: r.0 };
        let mut it = view.cursor();
        for _ in 0..n {
            it.next_child()?;
        }
        it.0.0.is_empty().then_some(view)
    }

    /// Number of children.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The children, in the record's order.
    pub fn children(&self) -> impl Iterator<Item = ChildRef<'a>> + use<'a> {
        let mut it = self.cursor();
        (0..self.count).map_while(move |_| it.next_child())
    }

    fn cursor(&self) -> ChildIter<'a> {
        ChildIter(Cursor(self.body))
    }

    /// The owned record.
    pub fn to_record(self) -> DirRecord {
        DirRecord {
            tree: self.tree,
            listing: self.listing,
            children: self.children().map(ChildRef::to_child).collect(),
        }
    }
}

struct ChildIter<'a>(Cursor<'a>);

impl<'a> ChildIter<'a> {
    fn next_child(&mut self) -> Option<ChildRef<'a>> {
        let r = &mut self.0;
        let len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().ok()?));
        let name = std::str::from_utf8(r.take(len)?).ok()?;
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
        Some(ChildRef { name, kind, stored, size, stat, id })
    }
}

impl DirRecord {
    /// Encodes the record (always the current version).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_V2 + self.children.len() * (CHILD_FIXED + 16));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.tree.as_bytes());
        let d = self.listing.unwrap_or_default();
        out.push(if self.listing.is_some() { LISTING } else { 0 });
        out.extend_from_slice(&d.mtime_ns.to_le_bytes());
        out.extend_from_slice(&d.ctime_ns.to_le_bytes());
        out.extend_from_slice(&d.ino.to_le_bytes());
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

    /// Decodes a record; `None` for anything malformed (see [`RecordView::parse`]).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        RecordView::parse(bytes).map(RecordView::to_record)
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
        let mut rec = DirRecord {
            tree: ObjectId::for_blob(b"t"),
            listing: Some(DirStat { mtime_ns: 11, ctime_ns: -12, ino: 13 }),
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
        assert_eq!(DirRecord::decode(&bytes), Some(rec.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(DirRecord::decode(&bytes[..cut]), None);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(DirRecord::decode(&long), None);
        let mut v3 = bytes.clone();
        v3[4] = 3;
        assert_eq!(DirRecord::decode(&v3), None);

        // A version 1 record (no directory stat) still reads, with no listing to trust.
        rec.listing = None;
        let v2 = rec.encode();
        let mut v1 = v2[..37].to_vec();
        v1[4] = 1;
        v1.extend_from_slice(&v2[37 + 25..]);
        assert_eq!(DirRecord::decode(&v1), Some(rec.clone()));
        // So does a version 2 record whose listing flag is clear, whatever its stat says.
        let mut unflagged = bytes;
        unflagged[37] = 0;
        assert_eq!(DirRecord::decode(&unflagged), Some(rec));
    }
}
