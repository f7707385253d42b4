//! The `file://` remote's index records (`parse`, values of its `history` and `current`
//! tables) never panic, and a record that decodes re-encodes to the same bytes. A
//! deleted key's record (byte 0 is 0) and a folder's kind never decode.
#![no_main]

use bmsync::fuzzing::{encode_index_record, parse_index_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(info) = parse_index_record("notes/a.md", data) else { return };
    assert_ne!(data[0], 0, "a deleted key's record decoded");
    assert_eq!(info.key, "notes/a.md");
    let kind = info.kind.expect("an index record always names its kind");
    assert!(!kind.is_tree(), "an index record decoded as a folder");
    let content = info.content.expect("an index record always has a content id");
    let again = encode_index_record(kind, info.size, content, &info.etag);
    assert_eq!(again, data, "re-encoding an index record changed its bytes");
});
