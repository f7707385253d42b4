//! Trees: one directory listing. `TreeRef` borrows from encoded bytes; `Tree` owns and encodes.

use std::cmp::Ordering;

use super::decode::{DecodeError, PutLe, Reader};
use super::name::{MAX_NAME_LEN, NameError, check_name, entry_order};
use crate::id::{ID_LEN, ObjectId, ObjectKind};

/// Magic bytes that open an encoded tree.
pub const TREE_MAGIC: &[u8; 4] = b"bmtr";
/// Smallest encoded entry: kind, name length, a 1-byte name, id, size.
const MIN_ENTRY_LEN: usize = 1 + 2 + 1 + ID_LEN + 8;

/// What a tree entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file; the id is its blob.
    File,
    /// A regular file with an execute bit; the id is its blob.
    Executable,
    /// A symbolic link; the id is the blob of its target path. Never followed.
    Symlink,
    /// A subdirectory; the id is its tree.
    Tree,
}

impl EntryKind {
    /// The byte that encodes this kind.
    pub const fn code(self) -> u8 {
        match self {
            Self::File => 1,
            Self::Executable => 2,
            Self::Symlink => 3,
            Self::Tree => 4,
        }
    }

    /// The kind an encoded byte names.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::File),
            2 => Some(Self::Executable),
            3 => Some(Self::Symlink),
            4 => Some(Self::Tree),
            _ => None,
        }
    }

    /// Lower-case name, as printed by the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Executable => "executable",
            Self::Symlink => "symlink",
            Self::Tree => "tree",
        }
    }

    /// Whether the entry is a subtree.
    pub const fn is_tree(self) -> bool {
        matches!(self, Self::Tree)
    }

    /// The kind of object the entry's id names.
    pub const fn object_kind(self) -> ObjectKind {
        if self.is_tree() { ObjectKind::Tree } else { ObjectKind::Blob }
    }
}

/// One entry of an owned tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TreeEntry {
    /// The entry's name in its directory (NFC, no `/`).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Blob id, or tree id for a subtree.
    pub id: ObjectId,
    /// Bytes: the file's length, the symlink target's length, or for a subtree the sum
    /// of the sizes of every file and symlink beneath it.
    pub size: u64,
}

/// One entry borrowed from encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The entry's name.
    pub name: &'a str,
    /// What it is.
    pub kind: EntryKind,
    /// Blob or tree id.
    pub id: ObjectId,
    /// Size in bytes, as in [`TreeEntry::size`].
    pub size: u64,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> TreeEntry {
        TreeEntry { name: self.name.to_owned(), kind: self.kind, id: self.id, size: self.size }
    }
}

fn order(a: (&str, EntryKind), b: (&str, EntryKind)) -> Ordering {
    entry_order(a.0, a.1.is_tree(), b.0, b.1.is_tree())
}

/// Why entries do not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A name that no tree may hold.
    #[error("invalid entry name {name:?}: {source}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        source: NameError,
    },
    /// Two entries with one name.
    #[error("two entries named {name:?}")]
    Duplicate {
        /// The name.
        name: String,
    },
}

/// A tree decoded in place: entries borrow their names from the encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeRef<'a> {
    entries: Vec<EntryRef<'a>>,
}

impl<'a> TreeRef<'a> {
    /// Decodes and validates a canonical tree encoding (`format-spec/objects.md`).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::open(bytes, ObjectKind::Tree, *TREE_MAGIC)?;
        let n = r.u32("entry count")?;
        let n = r.count(u64::from(n), MIN_ENTRY_LEN, "entry count")?;
        let mut entries: Vec<EntryRef<'a>> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.pos();
            let code = r.u8("entry kind")?;
            let kind = EntryKind::from_code(code)
                .ok_or_else(|| r.invalid(at, "entry kind", format!("unknown kind code {code}")))?;
            let len = usize::from(r.u16("name length")?);
            let name_at = r.pos();
            let name = r.str(len, 1, MAX_NAME_LEN, "entry name")?;
            check_name(name).map_err(|e| r.invalid(name_at, "entry name", e.to_string()))?;
            let id = r.id("entry id")?;
            let size = r.u64("entry size")?;
            if let Some(prev) = entries.last()
                && order((prev.name, prev.kind), (name, kind)) != Ordering::Less
            {
                let why = format!("{name:?} is not after {:?}", prev.name);
                return Err(r.invalid(at, "entry order", why));
            }
            entries.push(EntryRef { name, kind, id, size });
        }
        r.finish()?;
        let tree = Self { entries };
        // A file and a subtree of one name sort apart, so look each subtree's name up.
        for e in tree.entries.iter().filter(|e| e.kind.is_tree()) {
            if tree.search(e.name, EntryKind::File).is_ok() {
                return Err(DecodeError::Invalid {
                    kind: ObjectKind::Tree,
                    offset: 0,
                    what: "entry name",
                    reason: format!("{:?} names both a subtree and a file", e.name),
                });
            }
        }
        Ok(tree)
    }

    fn search(&self, name: &str, kind: EntryKind) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| order((e.name, e.kind), (name, kind)))
    }

    /// The entries, in canonical order.
    pub fn entries(&self) -> &[EntryRef<'a>] {
        &self.entries
    }

    /// Looks an entry up by name in O(log n).
    pub fn find(&self, name: &str) -> Option<&EntryRef<'a>> {
        self.search(name, EntryKind::File)
            .or_else(|_| self.search(name, EntryKind::Tree))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Tree {
        Tree { entries: self.entries.iter().map(EntryRef::to_owned).collect() }
    }
}

/// An owned, validated tree: entries unique by name and kept in canonical order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Tree {
    entries: Vec<TreeEntry>,
}

impl Tree {
    /// Builds a tree from entries in any order.
    pub fn new(mut entries: Vec<TreeEntry>) -> Result<Self, TreeError> {
        for e in &entries {
            check_name(&e.name).map_err(|source| TreeError::InvalidName { name: e.name.clone(), source })?;
        }
        entries.sort_by(|a, b| order((&a.name, a.kind), (&b.name, b.kind)));
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(TreeError::Duplicate { name: w[0].to_owned() });
        }
        Ok(Self { entries })
    }

    /// Decodes a canonical encoding into an owned tree.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(TreeRef::decode(bytes)?.to_owned())
    }

    /// The entries, in canonical order.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// Sum of entry sizes: the `size` a parent tree records for this one.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).fold(0, u64::saturating_add)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(9 + self.entries.iter().map(|e| MIN_ENTRY_LEN + e.name.len()).sum::<usize>());
        out.extend_from_slice(TREE_MAGIC);
        out.push(1);
        out.put_u32(u32::try_from(self.entries.len()).expect("a tree holds fewer than 2^32 entries"));
        for e in &self.entries {
            out.push(e.kind.code());
            out.put_u16(u16::try_from(e.name.len()).expect("names are checked to be at most 1024 bytes"));
            out.extend_from_slice(e.name.as_bytes());
            out.extend_from_slice(e.id.as_bytes());
            out.put_u64(e.size);
        }
        out
    }

    /// The tree's id: its encoding hashed in the tree domain.
    pub fn id(&self) -> ObjectId {
        ObjectId::hash(ObjectKind::Tree, &self.encode())
    }
}
