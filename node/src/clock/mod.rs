//! Time: the hybrid logical clock that timestamps writes.

mod hlc;

pub use hlc::{
    CEILING_LEAD_MICROS, HybridClock, MAX_FORWARD_DRIFT_MICROS, PhysicalClock, SaveCeiling,
    Timestamp, wall_clock_micros, wall_clock_seconds,
};
