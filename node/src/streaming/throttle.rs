//! Pacing a stream to `stream_throughput_mb`.

use std::time::Duration;

use tokio::time::Instant;

/// Holds a stream to a byte rate averaged since it started.
pub struct Throttle {
    /// 0: unthrottled.
    bytes_per_second: u64,
    started: Instant,
    sent: u64,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Counts `bytes` sent, and sleeps while the stream is ahead of its
    /// rate.
    pub async fn pace(&mut self, bytes: u64) {
        if self.bytes_per_second == 0 {
            return;
        }
        self.sent = self.sent.saturating_add(bytes);
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_second as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let mut throttle = Throttle::new(1000);
        let start = Instant::now();
        for _ in 0..10 {
            throttle.pace(500).await;
        }
        // 5,000 bytes at 1,000 per second take five seconds.
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let mut off = Throttle::new(0);
        let start = Instant::now();
        off.pace(u64::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
