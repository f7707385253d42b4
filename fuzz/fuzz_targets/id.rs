//! Id and prefix parsing never panics, and accepts only hex that prints back as the
//! input lower-cased.
#![no_main]

use bmsync::{IdPrefix, ObjectId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let lower = s.to_lowercase();
    if let Ok(id) = s.parse::<ObjectId>() {
        assert_eq!(id.to_hex(), lower, "ObjectId does not print as its input");
        assert_eq!(id.to_string(), lower);
        let p = IdPrefix::parse(s).expect("a full id is also a prefix");
        assert!(id.starts_with(&p));
        assert_eq!(p.lower_bound(), id);
    }
    if let Ok(p) = IdPrefix::parse(s) {
        assert_eq!(p.to_string(), lower, "IdPrefix does not print as its input");
        assert_eq!(p.len(), s.len());
        assert!(p.lower_bound().starts_with(&p));
    }
});
