//! Lets the simulation replay exactly: its test binary defines
//! `getrandom` (see src/sim/entropy.rs), and this exports that symbol so
//! the lookups of std and the getrandom crate (both `dlsym`) find it
//! before libc's. Binaries that do not define it are unaffected.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=getrandom");
}
