//! The intent journal's entries (JSON in the store's `journal` table, read by the
//! recovery after an interrupted sync with exactly this call) never panic, and what
//! decodes survives a round trip through the writer's encoding, a fixed point. JSON is
//! not canonical, so the input's own bytes are not compared.
#![no_main]

use bmsync::fuzzing::JournalEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = serde_json::from_slice::<JournalEntry>(data) else { return };
    let text = serde_json::to_vec(&entry).expect("journal entries serialise");
    let again: JournalEntry = serde_json::from_slice(&text).expect("a written entry reads back");
    assert_eq!(again, entry, "a round trip changed the entry");
    assert_eq!(serde_json::to_vec(&again).expect("serialise"), text, "the encoding is not a fixed point");
});
