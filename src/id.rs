//! Object ids: 32-byte BLAKE3 hashes, their hex forms, and abbreviated prefixes.
//!
//! A blob's id is the plain BLAKE3 hash of its bytes (what `b3sum` prints). Every other
//! kind is hashed in BLAKE3's key-derivation mode with a context string of its own, so
//! no blob can ever share an id with a tree, commit or manifest (`format-spec/ids.md`).

use std::fmt;
use std::str::FromStr;

/// Length of an object id in bytes.
pub const ID_LEN: usize = 32;

/// The fewest hex characters accepted as an abbreviated id.
pub const MIN_PREFIX_HEX: usize = 4;

/// The kind of an object, which also selects its hash domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// File contents (or a symlink's target), hashed as plain BLAKE3.
    Blob,
    /// A directory listing.
    Tree,
    /// A recorded state: root tree, parents, and the remote baseline.
    Commit,
    /// The remote manifest: per path, what was known of the remote object.
    Manifest,
}

impl ObjectKind {
    /// Every kind, in code order.
    pub const ALL: [ObjectKind; 4] = [Self::Blob, Self::Tree, Self::Commit, Self::Manifest];

    /// The byte that names this kind in the store (`format-spec/store.md`).
    pub const fn code(self) -> u8 {
        match self {
            Self::Blob => 1,
            Self::Tree => 2,
            Self::Commit => 3,
            Self::Manifest => 4,
        }
    }

    /// The kind named by a store code, if any.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Blob),
            2 => Some(Self::Tree),
            3 => Some(Self::Commit),
            4 => Some(Self::Manifest),
            _ => None,
        }
    }

    /// The BLAKE3 key-derivation context, or `None` for blobs (plain hash).
    pub const fn hash_context(self) -> Option<&'static str> {
        match self {
            Self::Blob => None,
            Self::Tree => Some("bmsync 2026-11-25 tree v1"),
            Self::Commit => Some("bmsync 2026-11-25 commit v1"),
            Self::Manifest => Some("bmsync 2026-11-25 manifest v1"),
        }
    }

    /// Lower-case name, as printed by the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Tree => "tree",
            Self::Commit => "commit",
            Self::Manifest => "manifest",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A streaming hasher for one object kind.
#[derive(Clone, Debug)]
pub struct ObjectHasher(blake3::Hasher);

impl ObjectHasher {
    /// A hasher in `kind`'s domain.
    pub fn new(kind: ObjectKind) -> Self {
        Self(match kind.hash_context() {
            None => blake3::Hasher::new(),
            Some(ctx) => blake3::Hasher::new_derive_key(ctx),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// The id of everything fed so far.
    pub fn finalize(&self) -> ObjectId {
        ObjectId(*self.0.finalize().as_bytes())
    }
}

/// Hashing by writing: lets `std::io::copy` and streaming downloads feed a hasher.
impl std::io::Write for ObjectHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes through to `inner`, hashing and counting what it took (a download into a file
/// that learns the content id on the way).
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: ObjectHasher,
    written: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    /// Hashes in `kind`'s domain.
    pub(crate) fn new(kind: ObjectKind, inner: W) -> Self {
        Self { inner, hasher: ObjectHasher::new(kind), written: 0 }
    }

    /// The id of what was written, and its size.
    pub(crate) fn finish(&self) -> (ObjectId, u64) {
        (self.hasher.finalize(), self.written)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A 32-byte BLAKE3 object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// Wraps raw id bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw id bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Hashes a whole object of `kind` held in memory.
    pub fn hash(kind: ObjectKind, bytes: &[u8]) -> Self {
        ObjectHasher::new(kind).update(bytes).finalize()
    }

    /// Hashes blob bytes; equals `b3sum`'s output.
    pub fn for_blob(bytes: &[u8]) -> Self {
        Self::hash(ObjectKind::Blob, bytes)
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(ID_LEN * 2);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// The first `n` hex characters (at most 64).
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_hex();
        s.truncate(n.min(ID_LEN * 2));
        s
    }

    /// Whether this id starts with `prefix`.
    pub fn starts_with(&self, prefix: &IdPrefix) -> bool {
        let full = prefix.nibbles / 2;
        if self.0[..full] != prefix.bytes[..full] {
            return false;
        }
        prefix.nibbles.is_multiple_of(2) || (self.0[full] >> 4) == (prefix.bytes[full] >> 4)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    /// Reads the hex form written by `Serialize` (64 hex characters, either case).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a string is not an id or id prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Wrong number of hex characters.
    #[error("{input:?} is not an object id: expected {expected} hex characters, found {found}")]
    Length {
        /// The rejected text.
        input: String,
        /// What was expected, in words.
        expected: &'static str,
        /// How many characters were given.
        found: usize,
    },
    /// A character outside `0-9a-fA-F`.
    #[error("{input:?} is not an object id: {bad:?} is not a hex digit")]
    NotHex {
        /// The rejected text.
        input: String,
        /// The first offending character.
        bad: char,
    },
}

impl FromStr for ObjectId {
    type Err = IdError;

    /// Parses exactly 64 hex characters (either case).
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = IdPrefix::parse_with_min(s, ID_LEN * 2)?;
        Ok(Self(p.bytes))
    }
}

/// An abbreviated id: 4 to 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdPrefix {
    /// Prefix bytes; the low nibble of the last byte is zero for odd lengths.
    bytes: [u8; ID_LEN],
    nibbles: usize,
}

impl IdPrefix {
    /// Parses a prefix of at least [`MIN_PREFIX_HEX`] hex characters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_with_min(s, MIN_PREFIX_HEX)
    }

    fn parse_with_min(s: &str, min: usize) -> Result<Self, IdError> {
        let n = s.len();
        if n < min || n > ID_LEN * 2 {
            return Err(IdError::Length {
                input: s.to_owned(),
                expected: if min == ID_LEN * 2 { "64" } else { "4 to 64" },
                found: s.chars().count(),
            });
        }
        let mut bytes = [0u8; ID_LEN];
        for (i, c) in s.bytes().enumerate() {
            let v = nibble(c).ok_or_else(|| IdError::NotHex {
                input: s.to_owned(),
                bad: s[i..].chars().next().unwrap_or('?'),
            })?;
            bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        Ok(Self { bytes, nibbles: n })
    }

    /// The smallest id with this prefix: where a sorted scan starts.
    pub fn lower_bound(&self) -> ObjectId {
        ObjectId(self.bytes)
    }

    /// Number of hex characters.
    pub fn len(&self) -> usize {
        self.nibbles
    }

    /// Always false: a prefix has at least four characters.
    pub fn is_empty(&self) -> bool {
        self.nibbles == 0
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ObjectId(self.bytes).short(self.nibbles))
    }
}

impl fmt::Debug for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdPrefix({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_official_blake3_vectors() {
        // b3sum of an empty file and of "abc".
        assert_eq!(
            ObjectId::for_blob(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            ObjectId::for_blob(b"abc").to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn domains_separate_kinds() {
        let bytes = b"same bytes";
        let ids: Vec<_> = ObjectKind::ALL.iter().map(|k| ObjectId::hash(*k, bytes)).collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = ObjectId::for_blob(b"x");
        assert_eq!(id.to_hex().parse::<ObjectId>(), Ok(id));
        assert_eq!(id.to_hex().to_uppercase().parse::<ObjectId>(), Ok(id));
        assert!(matches!("abc".parse::<ObjectId>(), Err(IdError::Length { found: 3, .. })));
        let mut bad = id.to_hex();
        bad.replace_range(5..6, "g");
        assert!(matches!(bad.parse::<ObjectId>(), Err(IdError::NotHex { bad: 'g', .. })));
        assert!(matches!("ééééé".parse::<ObjectId>(), Err(IdError::Length { .. })));
        assert!(matches!(IdPrefix::parse("é1234"), Err(IdError::NotHex { bad: 'é', .. })));
    }

    #[test]
    fn prefixes_match_odd_and_even() {
        let id = ObjectId::for_blob(b"abc"); // 6437b3ac...
        for p in ["6437", "6437b", "6437B3", &id.to_hex()] {
            assert!(id.starts_with(&IdPrefix::parse(p).expect("valid")), "{p}");
        }
        for p in ["6438", "6437c", "6437b4"] {
            assert!(!id.starts_with(&IdPrefix::parse(p).expect("valid")), "{p}");
        }
        assert!(IdPrefix::parse("643").is_err());
        assert_eq!(IdPrefix::parse("6437B").expect("valid").to_string(), "6437b");
    }
}
