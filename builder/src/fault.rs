//! Fault points for crash-safety tests: `PIC_FAULT_KILL_AT=N` makes the process SIGKILL itself at
//! the N-th point it passes; `PIC_FAULT_PAUSE_AT=<point name>` makes it say so on stderr and
//! wait there for ever, so that a VM test can cut the machine's power at that very step.
//!
//! The points sit between the steps of every durable write (temporary written, renamed, directory
//! fsynced), so a test can stop a build or switch at each of them in turn and then check that the
//! state directory still holds a complete current generation. Unset, a point costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the fault points.
pub const ENV: &str = "PIC_FAULT_KILL_AT";
/// The environment variable that names the point to pause at.
pub const PAUSE_ENV: &str = "PIC_FAULT_PAUSE_AT";

static TARGET: OnceLock<Option<u64>> = OnceLock::new();
static PAUSE: OnceLock<Option<String>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

/// Marks a point at which a crash must leave the state directory consistent.
pub fn point(name: &str) {
    if PAUSE.get_or_init(|| std::env::var(PAUSE_ENV).ok()).as_deref() == Some(name) {
        eprintln!("fault point reached: paused at {name:?}");
        loop {
            std::thread::park();
        }
    }
    let target = *TARGET.get_or_init(|| std::env::var(ENV).ok().and_then(|v| v.parse().ok()));
    let Some(target) = target else { return };
    if PASSED.fetch_add(1, Ordering::SeqCst) + 1 == target {
        tracing::warn!(point = name, "fault point reached; killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
