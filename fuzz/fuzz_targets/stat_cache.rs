//! `DirRecord::decode` (a stat-cache record from the store's `worktree` table) never
//! panics, and what it accepts re-encodes to the input byte for byte, except for the
//! bytes decoding drops on purpose: flag bits other than "stored" (and, in the header,
//! other than "listing"), the directory stat of a record without a listing, and the stat
//! fields of a subdirectory (always zero in a record bmsync writes). A version 1 input
//! re-encodes as version 2, so only its children are compared.
#![no_main]

use bmsync::fuzzing::DirRecord;
use libfuzzer_sys::fuzz_target;

/// Headers: magic, version, tree id, (version 2: flags, directory stat,) child count.
const HEADER_V1: usize = 4 + 1 + 32 + 4;
const HEADER_V2: usize = 4 + 1 + 32 + 1 + 24 + 4;

fuzz_target!(|data: &[u8]| {
    let Some(rec) = DirRecord::decode(data) else { return };
    let again = rec.encode();
    let redecoded = DirRecord::decode(&again).expect("a re-encoded record decodes");
    assert_eq!(redecoded, rec, "decoding the re-encoding gave a different record");
    assert_eq!(redecoded.encode(), again, "encoding is not a fixed point");

    // The input with the ignored bits cleared must equal the re-encoding.
    let header = if data[4] == 1 { HEADER_V1 } else { HEADER_V2 };
    let mut canon = again[..HEADER_V2].to_vec();
    canon.extend_from_slice(&data[header..]);
    if data[4] == 2 {
        // The header as read: only the listing bit, and a stat only with it.
        let mut h = data[..HEADER_V2].to_vec();
        h[37] &= 1;
        if h[37] == 0 {
            h[38..62].fill(0);
        }
        canon[..HEADER_V2].copy_from_slice(&h);
    }
    let data = canon.clone();
    let mut at = HEADER_V2;
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
