//! The JSON meta records other than the conflicts (`remote-probe`,
//! `accept-lost-updates`, `collisions`), each read with the call the store's reader
//! makes: none panics on any bytes, and what decodes survives a round trip through the
//! writer's encoding, a fixed point.
#![no_main]

use bmsync::fuzzing::AcceptedLostUpdates;
use bmsync::remote::ProbeRecord;
use bmsync::worktree::Collision;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else { return };
    let text = serde_json::to_vec(&value).expect("meta records serialise");
    let again: T = serde_json::from_slice(&text).expect("a written record reads back");
    assert_eq!(again, value, "a round trip changed the record");
    assert_eq!(serde_json::to_vec(&again).expect("serialise"), text, "the encoding is not a fixed point");
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ProbeRecord>(data);
    round_trip::<AcceptedLostUpdates>(data);
    round_trip::<Vec<Collision>>(data);
});
