//! Object rows of the store's `objects` table (`decode_row`: header, then one zstd
//! frame or nothing) never panic, and fail only with `Corrupt` naming the row's id. A
//! chunked row is canonical (re-encodes byte for byte); an inline row's frame is not
//! (zstd has many encodings of the same bytes), so its decoded bytes must survive a
//! round trip through the writer's encoding instead.
#![no_main]

use bmsync::ObjectId;
use bmsync::fuzzing::{LAYOUT_CHUNKED, RowBody, decode_row, inline_row, row_header};
use bmsync::store::StoreError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = ObjectId::from_bytes([7; 32]);
    match decode_row(&id, data) {
        Err(StoreError::Corrupt { id: named, .. }) => assert_eq!(named, id),
        Err(e) => panic!("a bad row gave {e:?}, not Corrupt"),
        Ok((kind, size, RowBody::Chunked)) => {
            assert_eq!(row_header(kind, LAYOUT_CHUNKED, size), data, "a chunked row is not canonical");
        }
        Ok((kind, size, RowBody::Inline(bytes))) => {
            assert_eq!(bytes.len() as u64, size, "an inline row's bytes disagree with its header");
            let again = inline_row(kind, &bytes);
            let (k2, s2, body) = decode_row(&id, &again).expect("a re-encoded row decodes");
            assert_eq!((k2, s2), (kind, size));
            assert_eq!(body, RowBody::Inline(bytes), "re-encoding an inline row changed its bytes");
        }
    }
});
