//! Time: the hybrid logical clock that timestamps writes.

mod hlc;

pub use hlc::{
    HybridClock, MAX_FORWARD_DRIFT_MICROS, PhysicalClock, Timestamp, wall_clock_micros,
    wall_clock_seconds,
};
