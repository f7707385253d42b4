//! `TreeRef::decode` never panics, and whatever it accepts is the one canonical
//! encoding of its value: re-encoding gives back the input byte for byte.
#![no_main]

use bmsync::object::TreeRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = TreeRef::decode(data) else { return };
    let owned = tree.to_owned();
    let again = owned.encode();
    assert_eq!(again, data, "re-encoding a decoded tree changed its bytes");
    let redecoded = TreeRef::decode(&again).expect("a re-encoded tree decodes").to_owned();
    assert_eq!(redecoded, owned, "decoding the re-encoding gave a different tree");
});
