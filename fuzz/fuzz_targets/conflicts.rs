//! The conflict records (JSON in the store's `meta` table under `conflicts`, read by
//! `bmsync::conflicts::load` with exactly this call) never panic, and what decodes
//! survives a round trip through `save`'s encoding; that encoding is a fixed point.
//! JSON is not canonical (spacing, escapes, id case), so the input's own bytes are not
//! compared.
#![no_main]

use bmsync::conflicts::ConflictRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = serde_json::from_slice::<Vec<ConflictRecord>>(data) else { return };
    let text = serde_json::to_vec(&records).expect("conflict records serialise");
    let again: Vec<ConflictRecord> = serde_json::from_slice(&text).expect("saved records load");
    assert_eq!(again, records, "a round trip through save and load changed the records");
    assert_eq!(serde_json::to_vec(&again).expect("serialise"), text, "the encoding is not a fixed point");
});
