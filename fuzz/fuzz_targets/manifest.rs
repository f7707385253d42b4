//! `ManifestRef::decode` never panics, and whatever it accepts is the one canonical
//! encoding of its value: re-encoding gives back the input byte for byte.
#![no_main]

use bmsync::object::ManifestRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = ManifestRef::decode(data) else { return };
    let owned = manifest.to_owned();
    let again = owned.encode();
    assert_eq!(again, data, "re-encoding a decoded manifest changed its bytes");
    let redecoded = ManifestRef::decode(&again).expect("a re-encoded manifest decodes").to_owned();
    assert_eq!(redecoded, owned, "decoding the re-encoding gave a different manifest");
});
