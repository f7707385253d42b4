//! How an object is laid out in its row: a header (kind, layout, size), then one zstd
//! frame, or chunks in their own table (`format-spec/store.md`).

use std::io::{Read, Write};

use super::{CHUNK_SIZE, CHUNKS, OBJECTS, Result, StoreError};
use crate::id::{ObjectHasher, ObjectId, ObjectKind};

/// zstd level for objects: the fastest, and already most of the gain on Markdown.
const ZSTD_LEVEL: i32 = 1;
/// Object-row layout byte: one zstd frame follows the header.
pub(super) const LAYOUT_INLINE: u8 = 0;
/// Object-row layout byte: the bytes live in the `chunks` table.
pub const LAYOUT_CHUNKED: u8 = 1;
/// Object-row header: kind, layout, raw size (u64 LE).
pub(super) const HEADER_LEN: usize = 10;

pub(super) fn read_object(
    txn: &redb::ReadTransaction,
    id: &ObjectId,
    want: Option<ObjectKind>,
    out: &mut dyn Write,
) -> Result<ObjectKind> {
    let objects = txn.open_table(OBJECTS)?;
    let row = objects.get(id.as_bytes())?.ok_or(StoreError::NotFound { id: *id })?;
    let row = row.value();
    let (kind, layout, size) = parse_header(id, row)?;
    if let Some(expected) = want.filter(|&w| w != kind) {
        return Err(StoreError::WrongKind { id: *id, expected, found: kind });
    }
    let mut hasher = ObjectHasher::new(kind);
    let mut emit = |chunk: &[u8]| -> Result<()> {
        hasher.update(chunk);
        out.write_all(chunk).map_err(|source| StoreError::Io { id: *id, source })
    };
    if let RowBody::Inline(bytes) = row_body(id, row, layout, size)? {
        emit(&bytes)?;
    } else {
        let chunks = txn.open_table(CHUNKS)?;
        let count = size.div_ceil(CHUNK_SIZE as u64);
        for i in 0..count {
            let idx = u32::try_from(i).map_err(|_| corrupt(id, "too many chunks"))?;
            let want = (size - i * CHUNK_SIZE as u64).min(CHUNK_SIZE as u64);
            let frame = chunks
                .get((id.as_bytes(), idx))?
                .ok_or_else(|| corrupt(id, format!("chunk {idx} is missing")))?;
            emit(&decompress(id, frame.value(), want)?)?;
        }
    }
    let actual = hasher.finalize();
    if actual != *id {
        return Err(corrupt(id, format!("content hashes to {actual}")));
    }
    Ok(kind)
}

/// What follows an object row's header.
#[derive(Debug, PartialEq, Eq)]
pub enum RowBody {
    /// The object's bytes, from the row's one zstd frame.
    Inline(Vec<u8>),
    /// The bytes are in the `chunks` table; the row is the header alone.
    Chunked,
}

/// Checks and decodes the body of an object row whose header [`parse_header`] read.
fn row_body(id: &ObjectId, row: &[u8], layout: u8, size: u64) -> Result<RowBody> {
    if layout == LAYOUT_INLINE {
        if size > CHUNK_SIZE as u64 {
            return Err(corrupt(id, format!("inline object of {size} bytes exceeds the chunk size")));
        }
        Ok(RowBody::Inline(decompress(id, &row[HEADER_LEN..], size)?))
    } else {
        if size <= CHUNK_SIZE as u64 || !row[HEADER_LEN..].is_empty() {
            return Err(corrupt(id, "chunked row is not canonical"));
        }
        Ok(RowBody::Chunked)
    }
}

/// Decodes an object row as a read does, short of the `chunks` table and the check of
/// the content against `id`: its kind, raw size and body. For the fuzz targets.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_row(id: &ObjectId, row: &[u8]) -> Result<(ObjectKind, u64, RowBody)> {
    let (kind, layout, size) = parse_header(id, row)?;
    Ok((kind, size, row_body(id, row, layout, size)?))
}

pub(super) fn corrupt(id: &ObjectId, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { id: *id, reason: reason.into() }
}

pub(super) fn check_same(expected: ObjectId, actual: ObjectId) -> Result<()> {
    if expected == actual { Ok(()) } else { Err(StoreError::BlobChanged { expected, actual }) }
}

/// An object row's header: kind, layout, raw size.
pub fn header(kind: ObjectKind, layout: u8, size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.push(kind.code());
    h.push(layout);
    h.extend_from_slice(&size.to_le_bytes());
    h
}

/// An inline object row: the header, then one zstd frame of `bytes`.
pub fn inline_row(kind: ObjectKind, bytes: &[u8]) -> Vec<u8> {
    let mut row = header(kind, LAYOUT_INLINE, bytes.len() as u64);
    row.extend_from_slice(&compress(bytes));
    row
}

thread_local! {
    // zstd contexts are costly to set up (hundreds of KiB each); small notes would pay
    // that on every object, so each thread keeps one of each.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

pub(super) fn compress(bytes: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let c = match &mut *c {
            Some(c) => c,
            slot @ None => {
                slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context can be created"))
            }
        };
        c.compress(bytes).expect("zstd compression of an in-memory buffer cannot fail")
    })
}

/// Decompresses one frame that must hold exactly `size` bytes.
pub(super) fn decompress(id: &ObjectId, frame: &[u8], size: u64) -> Result<Vec<u8>> {
    let cap = usize::try_from(size).map_err(|_| corrupt(id, "size does not fit in memory"))?;
    let out = DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            let d = match &mut *d {
                Some(d) => d,
                slot @ None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress(frame, cap)
        })
        .map_err(|e| corrupt(id, format!("zstd: {e}")))?;
    if out.len() != cap {
        return Err(corrupt(id, format!("frame holds {} bytes, header says {cap}", out.len())));
    }
    Ok(out)
}

pub(super) fn parse_header(id: &ObjectId, row: &[u8]) -> Result<(ObjectKind, u8, u64)> {
    if row.len() < HEADER_LEN {
        return Err(corrupt(id, "row shorter than its header"));
    }
    let kind =
        ObjectKind::from_code(row[0]).ok_or_else(|| corrupt(id, format!("unknown kind code {}", row[0])))?;
    let layout = row[1];
    if layout != LAYOUT_INLINE && layout != LAYOUT_CHUNKED {
        return Err(corrupt(id, format!("unknown layout {layout}")));
    }
    let size = u64::from_le_bytes(row[2..HEADER_LEN].try_into().expect("slice is 8 bytes"));
    Ok((kind, layout, size))
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
pub(super) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(super) struct CountingWriter<'a> {
    pub(super) inner: &'a mut dyn Write,
    pub(super) n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
