//! Remote manifests: per path, what a sync knew of the remote object (key, ETag, size,
//! content id). A commit's baseline names one.

use std::cmp::Ordering;

use super::decode::{DecodeError, PutLe, Reader};
use super::name::{MAX_PATH_LEN, NameError, check_path, path_order};
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
        let mut r = Reader::open(bytes, ObjectKind::Manifest, *MANIFEST_MAGIC)?;
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
            let content = if r.flag("content flag")? { Some(r.id("content id")?) } else { None };
            entries.push(ManifestEntryRef { path, key, etag, size, content });
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
        out.push(1);
        out.put_u32(u32::try_from(self.entries.len()).expect("a manifest holds fewer than 2^32 entries"));
        for e in &self.entries {
            out.put_u16(u16::try_from(e.path.len()).expect("paths are checked to be at most 4096 bytes"));
            out.extend_from_slice(e.path.as_bytes());
            out.put_u16(u16::try_from(e.key.len()).expect("keys are checked to be at most 4096 bytes"));
            out.extend_from_slice(e.key.as_bytes());
            out.push(u8::try_from(e.etag.len()).expect("ETags are checked to be at most 255 bytes"));
            out.extend_from_slice(e.etag.as_bytes());
            out.put_u64(e.size);
            match e.content {
                None => out.push(0),
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(id.as_bytes());
                }
            }
        }
        out
    }

    /// The manifest's id: its encoding hashed in the manifest domain.
    pub fn id(&self) -> ObjectId {
        ObjectId::hash(ObjectKind::Manifest, &self.encode())
    }
}
