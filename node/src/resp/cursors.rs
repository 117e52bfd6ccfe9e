//! Cursors of the scan commands (`HSCAN`): Redis clients take a cursor for
//! a number (redis-py's `hscan_iter` parses it as one), but where a scan
//! of ringkv resumes is a page token of bytes. The node keeps each
//! unfinished scan's page token under a random number, shared by every
//! connection to the node, so a client that takes another connection from
//! its pool resumes where it was.
//!
//! A cursor stays valid after use, until it is forgotten: a client that
//! retries a page (after a timeout) gets it again. Bounded: at most
//! [`MAX_CURSORS`] cursors and [`MAX_CURSOR_BYTES`] of their keys and page
//! tokens are held, the least recently used going first, and a cursor
//! unused for [`IDLE`] is forgotten. A cursor this node does not hold
//! (forgotten, or issued by another node) is refused with `ERR invalid
//! cursor`; the scan starts again from 0.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Unfinished scans a node remembers at once.
pub const MAX_CURSORS: usize = 4096;
/// Bytes of keys and page tokens the node's cursors hold at most.
pub const MAX_CURSOR_BYTES: usize = 16 << 20;
/// How long an unused cursor is kept.
pub const IDLE: Duration = Duration::from_secs(600);

struct Held {
    /// The key the scan is of: a cursor only continues a scan of it.
    key: Bytes,
    /// Where the scan goes on.
    resume: Bytes,
    used: Instant,
}

impl Held {
    fn bytes(&self) -> usize {
        self.key.len() + self.resume.len()
    }
}

/// The node's unfinished scans.
#[derive(Default)]
pub struct Cursors {
    held: Mutex<HashMap<u64, Held>>,
}

impl Cursors {
    /// A new cursor (never 0) that resumes the scan of `key` at `resume`.
    pub fn issue(&self, key: Bytes, resume: Bytes) -> u64 {
        let Ok(mut held) = self.held.lock() else {
            return 0;
        };
        let now = Instant::now();
        held.retain(|_, h| now.duration_since(h.used) < IDLE);
        let adding = key.len() + resume.len();
        let mut bytes: usize = held.values().map(Held::bytes).sum();
        while !held.is_empty()
            && (held.len() >= MAX_CURSORS || bytes + adding > MAX_CURSOR_BYTES)
            && let Some(oldest) = held.iter().min_by_key(|(_, h)| h.used).map(|(id, _)| *id)
        {
            bytes -= held.remove(&oldest).map_or(0, |h| h.bytes());
        }
        let mut id = 0;
        while id == 0 || held.contains_key(&id) {
            // Below 2^63: clients that parse a cursor as a signed number
            // read it too.
            id = rand::random::<u64>() >> 1;
        }
        held.insert(
            id,
            Held {
                key,
                resume,
                used: now,
            },
        );
        id
    }

    /// Where the scan of `key` under `cursor` resumes; `None` if this
    /// node holds no such cursor for `key`. The cursor stays (a retried
    /// page finds it), counted as just used.
    pub fn resume(&self, cursor: u64, key: &[u8]) -> Option<Bytes> {
        let mut held = self.held.lock().ok()?;
        match held.get_mut(&cursor) {
            Some(h) if h.key == key && h.used.elapsed() < IDLE => {
                h.used = Instant::now();
                Some(h.resume.clone())
            }
            _ => None,
        }
    }

    /// Cursors held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_resumes_its_own_key_and_again_on_a_retry() {
        let cursors = Cursors::default();
        let id = cursors.issue(Bytes::from_static(b"h"), Bytes::from_static(b"at"));
        assert_ne!(id, 0);
        assert!(id < 1 << 63);
        assert_eq!(cursors.resume(id, b"other"), None, "another key's scan");
        assert_eq!(cursors.resume(id, b"h"), Some(Bytes::from_static(b"at")));
        assert_eq!(
            cursors.resume(id, b"h"),
            Some(Bytes::from_static(b"at")),
            "a retry"
        );
        assert_eq!(cursors.resume(12345, b"h"), None, "never issued");
    }

    #[test]
    fn the_bytes_held_are_bounded() {
        let cursors = Cursors::default();
        let big = Bytes::from(vec![7; 64 << 10]);
        let first = cursors.issue(big.clone(), big.clone());
        for _ in 0..(MAX_CURSOR_BYTES / (128 << 10)) + 10 {
            cursors.issue(big.clone(), big.clone());
        }
        assert!(cursors.len() <= MAX_CURSOR_BYTES / (128 << 10));
        assert_eq!(cursors.resume(first, &big), None, "the oldest went");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recently_used() {
        let cursors = Cursors::default();
        let first = cursors.issue(Bytes::from_static(b"h"), Bytes::from_static(b"0"));
        for i in 0..MAX_CURSORS + 10 {
            cursors.issue(Bytes::from_static(b"h"), Bytes::from(i.to_string()));
        }
        assert_eq!(cursors.len(), MAX_CURSORS);
        assert_eq!(cursors.resume(first, b"h"), None, "the oldest went first");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_cursors_are_forgotten() {
        let cursors = Cursors::default();
        let id = cursors.issue(Bytes::from_static(b"h"), Bytes::from_static(b"at"));
        tokio::time::advance(IDLE + Duration::from_secs(1)).await;
        assert_eq!(cursors.resume(id, b"h"), None);
    }
}
