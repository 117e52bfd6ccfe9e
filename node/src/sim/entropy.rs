//! Entropy the simulation controls. Some code it runs draws randomness
//! from the operating system, out of reach of any seed: chitchat picks
//! gossip peers with `rand::rng()`, and std's `HashMap`s order their
//! entries by per-thread random keys. Both read the OS through
//! `getrandom`, looked up with `dlsym`; this test binary defines that
//! symbol (exported by node/build.rs), so a thread that called
//! [`seed_this_thread`] gets bytes from a seeded stream instead, and every
//! other thread gets the OS's, through the raw system call.
//!
//! Each run uses a fresh thread: thread-local generators (`rand::rng()`,
//! hash keys) are created from the stream on first use, so a run replays
//! exactly whatever ran before it.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static STREAM: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// From now on, OS randomness on this thread comes from `seed`.
pub fn seed_this_thread(seed: u64) {
    STREAM.with(|stream| *stream.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Fills `len` bytes at `buf` from this thread's seeded stream; false when
/// the thread has none.
fn from_stream(buf: *mut u8, len: usize) -> bool {
    STREAM
        .try_with(|stream| {
            let Ok(mut stream) = stream.try_borrow_mut() else {
                return false;
            };
            let Some(rng) = stream.as_mut() else {
                return false;
            };
            // SAFETY: the caller of getrandom passes a writable buffer of
            // `len` bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(buf, len) };
            rng.fill_bytes(out);
            true
        })
        .unwrap_or(false)
}

/// libc's `getrandom(2)` wrapper, replaced for this binary.
///
/// # Safety
/// As `getrandom(2)`: `buf` is writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getrandom(
    buf: *mut libc::c_void,
    len: libc::size_t,
    flags: libc::c_uint,
) -> libc::ssize_t {
    if len > 0 && from_stream(buf.cast(), len) {
        return len as libc::ssize_t;
    }
    // SAFETY: forwards the caller's arguments to the system call.
    unsafe { libc::syscall(libc::SYS_getrandom, buf, len, flags) as libc::ssize_t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn on_a_seeded_thread<T: Send + 'static>(seed: u64, work: fn() -> T) -> T {
        std::thread::spawn(move || {
            seed_this_thread(seed);
            work()
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn seeded_threads_draw_the_same_os_randomness_and_others_do_not() {
        fn draws() -> (Vec<u32>, u64) {
            let set: HashSet<u32> = (0..64).collect();
            let order: Vec<u32> = set.into_iter().collect();
            (order, rand::random::<u64>())
        }
        let a = on_a_seeded_thread(1, draws);
        let b = on_a_seeded_thread(1, draws);
        assert_eq!(a, b, "hash order and rand::rng() replay");
        let c = on_a_seeded_thread(2, draws);
        assert_ne!(a.1, c.1);
        let unseeded = std::thread::spawn(draws).join().expect("thread");
        let again = std::thread::spawn(draws).join().expect("thread");
        assert_ne!(unseeded.1, again.1, "other threads get the OS's entropy");
    }
}
