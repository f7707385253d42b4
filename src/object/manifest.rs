//! Remote manifests: per path, what a sync knew of the remote object (key, ETag, size,
//! content id, and whether it is a file, an executable or a symlink). A commit's
//! baseline names one.

use std::cmp::Ordering;

use super::decode::{DecodeError, PutLe, Reader};
use super::name::{MAX_PATH_LEN, NameError, check_path, path_order};
use super::tree::EntryKind;
use crate::id::{ID_LEN, ObjectId, ObjectKind};

/// Magic bytes that open an encoded manifest.
pub const MANIFEST_MAGIC: &[u8; 4] = b"bmmf";
/// Longest remote key, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// Longest ETag, in bytes.
pub const MAX_ETAG_LEN: usize = 255;
/// Smallest encoded entry: path and key lengths with 1 byte each, ETag length, size, flags.
const MIN_ENTRY_LEN: usize = 2 + 1 + 2 + 1 + 1 + 8 + 1;

/// One path's remote identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ManifestEntry {
    /// The local relative path (NFC, `/`-separated).
    pub path: String,
    /// The object's key in the bucket, byte for byte.
    pub key: String,
    /// The ETag the remote reported, as sent (quotes included). Printable ASCII.
    pub etag: String,
    /// Object size in bytes.
    pub size: u64,
    /// BLAKE3 of the object's bytes, when known.
    pub content: Option<ObjectId>,
    /// File, executable or symlink (never `Tree`).
    pub kind: EntryKind,
}

/// A manifest entry borrowed from encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestEntryRef<'a> {
    /// Path.
    pub path: &'a str,
    /// Key.
    pub key: &'a str,
    /// ETag.
    pub etag: &'a str,
    /// Size.
    pub size: u64,
    /// Content id.
    pub content: Option<ObjectId>,
    /// Kind.
    pub kind: EntryKind,
}

impl ManifestEntryRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> ManifestEntry {
        ManifestEntry {
            path: self.path.to_owned(),
            key: self.key.to_owned(),
            etag: self.etag.to_owned(),
            size: self.size,
            content: self.content,
            kind: self.kind,
        }
    }
}

/// Why entries do not make a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A path no manifest may hold.
    #[error("invalid manifest path {path:?}: {source}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        source: NameError,
    },
    /// A key that is empty or over 4096 bytes.
    #[error("invalid remote key {key:?} for {path:?}: empty or over {MAX_KEY_LEN} bytes")]
    InvalidKey {
        /// The path.
        path: String,
        /// The key.
        key: String,
    },
    /// An ETag that is not printable ASCII of at most 255 bytes.
    #[error("invalid ETag {etag:?} for {path:?}: must be printable ASCII, at most 255 bytes")]
    InvalidEtag {
        /// The path.
        path: String,
        /// The ETag.
        etag: String,
    },
    /// An entry of kind tree.
    #[error("manifest entry {path:?} is of kind tree")]
    TreeKind {
        /// The path.
        path: String,
    },
    /// Two entries for one path.
    #[error("two manifest entries for {path:?}")]
    Duplicate {
        /// The path.
        path: String,
    },
}

fn etag_ok(etag: &str) -> bool {
    etag.len() <= MAX_ETAG_LEN && etag.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A manifest decoded in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRef<'a> {
    entries: Vec<ManifestEntryRef<'a>>,
}

impl<'a> ManifestRef<'a> {
    /// Decodes and validates a canonical manifest encoding.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (mut r, version) = Reader::open_versions(bytes, ObjectKind::Manifest, *MANIFEST_MAGIC, 2)?;
        let n = r.u32("entry count")?;
        let n = r.count(u64::from(n), MIN_ENTRY_LEN, "entry count")?;
        let mut entries: Vec<ManifestEntryRef<'a>> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.pos();
            let len = usize::from(r.u16("path length")?);
            let path = r.str(len, 1, MAX_PATH_LEN, "path")?;
            check_path(path).map_err(|e| r.invalid(at, "path", e.to_string()))?;
            if let Some(prev) = entries.last()
                && path_order(prev.path, path) != Ordering::Less
            {
                return Err(r.invalid(at, "entry order", format!("{path:?} is not after {:?}", prev.path)));
            }
            let len = usize::from(r.u16("key length")?);
            let key = r.str(len, 1, MAX_KEY_LEN, "key")?;
            let len = usize::from(r.u8("etag length")?);
            let etag_at = r.pos();
            let etag = r.str(len, 0, MAX_ETAG_LEN, "etag")?;
            if !etag_ok(etag) {
                return Err(r.invalid(etag_at, "etag", "not printable ASCII"));
            }
            let size = r.u64("size")?;
            let flags_at = r.pos();
            let (has_content, kind) = if version == 1 {
                (r.flag("content flag")?, EntryKind::File)
            } else {
                let flags = r.u8("flags")?;
                let kind = match flags >> 1 {
                    0 => EntryKind::File,
                    1 => EntryKind::Executable,
                    2 => EntryKind::Symlink,
                    _ => {
                        return Err(r.invalid(
                            flags_at,
                            "flags",
                            format!("unknown flag bits in {flags:#04x}"),
                        ));
                    }
                };
                (flags & 1 == 1, kind)
            };
            let content = if has_content { Some(r.id("content id")?) } else { None };
            entries.push(ManifestEntryRef { path, key, etag, size, content, kind });
        }
        if version == 2 && entries.iter().all(|e| e.kind == EntryKind::File) {
            // Version 2 only where some entry needs it: one encoding per manifest.
            return Err(r.invalid(4, "version", "version 2 with only plain files (must be version 1)"));
        }
        r.finish()?;
        Ok(Self { entries })
    }

    /// Entries in path order.
    pub fn entries(&self) -> &[ManifestEntryRef<'a>] {
        &self.entries
    }

    /// Looks a path up in O(log n).
    pub fn get(&self, path: &str) -> Option<&ManifestEntryRef<'a>> {
        self.entries.binary_search_by(|e| path_order(e.path, path)).ok().map(|i| &self.entries[i])
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Manifest {
        Manifest { entries: self.entries.iter().map(ManifestEntryRef::to_owned).collect() }
    }
}

/// An owned, validated manifest, kept in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Builds a manifest from entries in any order.
    pub fn new(mut entries: Vec<ManifestEntry>) -> Result<Self, ManifestError> {
        for e in &entries {
            check_path(&e.path)
                .map_err(|source| ManifestError::InvalidPath { path: e.path.clone(), source })?;
            if e.key.is_empty() || e.key.len() > MAX_KEY_LEN {
                return Err(ManifestError::InvalidKey { path: e.path.clone(), key: e.key.clone() });
            }
            if !etag_ok(&e.etag) {
                return Err(ManifestError::InvalidEtag { path: e.path.clone(), etag: e.etag.clone() });
            }
            if e.kind.is_tree() {
                return Err(ManifestError::TreeKind { path: e.path.clone() });
            }
        }
        entries.sort_by(|a, b| path_order(&a.path, &b.path));
        if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(ManifestError::Duplicate { path: w[0].path.clone() });
        }
        Ok(Self { entries })
    }

    /// Decodes a canonical encoding into an owned manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(ManifestRef::decode(bytes)?.to_owned())
    }

    /// Entries in path order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Looks a path up in O(log n).
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries.binary_search_by(|e| path_order(&e.path, path)).ok().map(|i| &self.entries[i])
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            9 + self
                .entries
                .iter()
                .map(|e| MIN_ENTRY_LEN + e.path.len() + e.key.len() + e.etag.len() + ID_LEN)
                .sum::<usize>(),
        );
        out.extend_from_slice(MANIFEST_MAGIC);
        // Version 1 has no kinds; version 2 (a flags byte) only where one is needed, so a
        // manifest of plain files keeps the encoding (and id) it always had.
        let v2 = self.entries.iter().any(|e| e.kind != EntryKind::File);
        out.push(if v2 { 2 } else { 1 });
        out.put_u32(u32::try_from(self.entries.len()).expect("a manifest holds fewer than 2^32 entries"));
        for e in &self.entries {
            out.put_u16(u16::try_from(e.path.len()).expect("paths are checked to be at most 4096 bytes"));
            out.extend_from_slice(e.path.as_bytes());
            out.put_u16(u16::try_from(e.key.len()).expect("keys are checked to be at most 4096 bytes"));
            out.extend_from_slice(e.key.as_bytes());
            out.push(u8::try_from(e.etag.len()).expect("ETags are checked to be at most 255 bytes"));
            out.extend_from_slice(e.etag.as_bytes());
            out.put_u64(e.size);
            let kind_bits: u8 = match e.kind {
                EntryKind::File | EntryKind::Tree => 0,
                EntryKind::Executable => 1,
                EntryKind::Symlink => 2,
            };
            out.push(u8::from(e.content.is_some()) | kind_bits << 1);
            if let Some(id) = e.content {
                out.extend_from_slice(id.as_bytes());
            }
        }
        out
    }

    /// The manifest's id: its encoding hashed in the manifest domain.
    pub fn id(&self) -> ObjectId {
        ObjectId::hash(ObjectKind::Manifest, &self.encode())
    }
}
