//! `DirRecord::decode` (a stat-cache record from the store's `worktree` table) never
//! panics, and what it accepts re-encodes to the input byte for byte, except for the
//! bytes decoding drops on purpose: flag bits other than "stored", and the stat fields
//! of a subdirectory (always zero in a record bmsync writes).
#![no_main]

use bmsync::fuzzing::DirRecord;
use libfuzzer_sys::fuzz_target;

/// Header: magic, version, tree id, child count.
const HEADER: usize = 4 + 1 + 32 + 4;

fuzz_target!(|data: &[u8]| {
    let Some(rec) = DirRecord::decode(data) else { return };
    let again = rec.encode();
    let redecoded = DirRecord::decode(&again).expect("a re-encoded record decodes");
    assert_eq!(redecoded, rec, "decoding the re-encoding gave a different record");
    assert_eq!(redecoded.encode(), again, "encoding is not a fixed point");

    // The input with the ignored bits cleared must equal the re-encoding.
    let mut canon = data.to_vec();
    let mut at = HEADER;
    for child in &rec.children {
        at += 2 + child.entry.name.len() + 1;
        canon[at] &= 1; // flags: only bit 0 (stored) is read
        at += 1 + 8;
        if child.entry.kind.is_tree() {
            canon[at..at + 8 + 8 + 8 + 4].fill(0); // mtime, ctime, inode, mode
        }
        at += 8 + 8 + 8 + 4 + 32;
    }
    assert_eq!(at, data.len(), "the walk over the record lost its place");
    assert_eq!(again, canon, "re-encoding changed bytes that decoding reads");
});
