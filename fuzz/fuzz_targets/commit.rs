//! `CommitRef::decode` never panics, and whatever it accepts is the one canonical
//! encoding of its value: re-encoding gives back the input byte for byte.
#![no_main]

use bmsync::object::CommitRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(commit) = CommitRef::decode(data) else { return };
    let owned = commit.to_owned();
    let again = owned.encode();
    assert_eq!(again, data, "re-encoding a decoded commit changed its bytes");
    let redecoded = CommitRef::decode(&again).expect("a re-encoded commit decodes").to_owned();
    assert_eq!(redecoded, owned, "decoding the re-encoding gave a different commit");
});
