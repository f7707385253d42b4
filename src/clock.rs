//! The one place the library reads the wall clock (the planner reads none: its caller
//! hands it everything it needs).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Now, in UNIX nanoseconds (0 before the epoch, saturating far in the future).
pub fn unix_ns() -> u64 {
    now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
