//! A bounds-checked little-endian cursor shared by every decoder, and the decode error.

use crate::id::{ID_LEN, ObjectId, ObjectKind};

/// Why bytes are not a canonical encoding of an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The magic bytes are not this kind's.
    #[error("not a {kind} object: bad magic {found:02x?}")]
    BadMagic {
        /// Kind being decoded.
        kind: ObjectKind,
        /// The bytes found.
        found: Vec<u8>,
    },
    /// A format version this build does not know.
    #[error("{kind} object has format version {version}, which this bmsync does not read (upgrade bmsync)")]
    UnsupportedVersion {
        /// Kind being decoded.
        kind: ObjectKind,
        /// The version byte found.
        version: u8,
    },
    /// The bytes ended inside a field.
    #[error("{kind} object truncated at byte {offset} while reading {what}")]
    Truncated {
        /// Kind being decoded.
        kind: ObjectKind,
        /// Where the missing field starts.
        offset: usize,
        /// The field.
        what: &'static str,
    },
    /// Bytes remain after the last field.
    #[error("{kind} object has {extra} trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Kind being decoded.
        kind: ObjectKind,
        /// Where the extra bytes start.
        offset: usize,
        /// How many.
        extra: usize,
    },
    /// A field holds a value the format forbids.
    #[error("{kind} object: invalid {what} at byte {offset}: {reason}")]
    Invalid {
        /// Kind being decoded.
        kind: ObjectKind,
        /// Where the field starts.
        offset: usize,
        /// The field.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

/// A cursor over an encoded object. Every read is bounds-checked; nothing panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: ObjectKind,
}

impl<'a> Reader<'a> {
    /// Starts at byte 0 and checks the 4-byte magic and the version byte (must be 1).
    pub(crate) fn open(buf: &'a [u8], kind: ObjectKind, magic: [u8; 4]) -> Result<Self, DecodeError> {
        Ok(Self::open_versions(buf, kind, magic, 1)?.0)
    }

    /// Like [`Self::open`], accepting versions 1 to `newest`; returns the version found.
    pub(crate) fn open_versions(
        buf: &'a [u8],
        kind: ObjectKind,
        magic: [u8; 4],
        newest: u8,
    ) -> Result<(Self, u8), DecodeError> {
        let mut r = Self { buf, pos: 0, kind };
        let found = r.take(4, "magic")?;
        if found != magic.as_slice() {
            return Err(DecodeError::BadMagic { kind, found: found.to_vec() });
        }
        let version = r.u8("version")?;
        if !(1..=newest).contains(&version) {
            return Err(DecodeError::UnsupportedVersion { kind, version });
        }
        Ok((r, version))
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn invalid(
        &self,
        offset: usize,
        what: &'static str,
        reason: impl Into<String>,
    ) -> DecodeError {
        DecodeError::Invalid { kind: self.kind, offset, what, reason: reason.into() }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DecodeError::Truncated {
            kind: self.kind,
            offset: self.pos,
            what,
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn id(&mut self, what: &'static str) -> Result<ObjectId, DecodeError> {
        Ok(ObjectId::from_bytes(self.array::<ID_LEN>(what)?))
    }

    /// A boolean flag byte: 0 or 1, anything else is non-canonical.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(at, what, format!("flag byte {v} is neither 0 nor 1"))),
        }
    }

    /// A UTF-8 string of `len` bytes within `min..=max`.
    pub(crate) fn str(
        &mut self,
        len: usize,
        min: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        if len < min || len > max {
            return Err(self.invalid(at, what, format!("length {len} outside {min}..={max}")));
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|e| self.invalid(at, what, format!("not UTF-8: {e}")))
    }

    /// A count of items, each at least `min_item` bytes, that must fit in what is left.
    /// Checking this before allocating bounds every allocation by the input size.
    pub(crate) fn count(
        &mut self,
        n: u64,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let at = self.pos;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(min_item).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| {
            self.invalid(at, what, format!("count {n} cannot fit in {} remaining bytes", self.remaining()))
        })
    }

    /// Ends decoding: no trailing bytes are allowed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                kind: self.kind,
                offset: self.pos,
                extra: self.buf.len() - self.pos,
            })
        }
    }
}

/// Little-endian writer helpers for encoders.
pub(crate) trait PutLe {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
}

impl PutLe for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}
