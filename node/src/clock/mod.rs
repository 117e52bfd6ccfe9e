//! Time: the hybrid logical clock that timestamps writes, over a wall
//! clock the node is given.

mod hlc;
pub mod offsets;
mod skew;
mod wall;

pub use hlc::{CEILING_LEAD_MICROS, HybridClock, MAX_FORWARD_DRIFT_MICROS, SaveCeiling, Timestamp};
pub use offsets::ClockOffsets;
pub use skew::SkewLimit;
pub use wall::{WallClock, wall_clock_micros, wall_clock_seconds};
