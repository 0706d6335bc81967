//! Waiting in tests: a probe polled until what it sees is right, within a limit the caller derives
//! from what it waits for. A timeout prints every distinct thing the probe saw, and when, so that
//! a failure on a busy machine explains itself.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long `pic serve` may take to answer once started: a debug build's start on a busy machine
/// (it reads the state, opens its log and binds; well under a second when idle).
pub const SERVE_START: Duration = Duration::from_secs(30);

/// Polls `probe` every `every` until `done` holds for what it returned, and returns that.
pub fn wait_for<T: Debug + PartialEq>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    let mut seen: Vec<(Duration, T)> = Vec::new();
    loop {
        let now = probe();
        if done(&now) {
            return now;
        }
        if seen.last().is_none_or(|(_, last)| *last != now) {
            seen.push((started.elapsed(), now));
        }
        if started.elapsed() >= limit {
            let history: Vec<String> =
                seen.iter().map(|(at, value)| format!("  at {:>6.1} s: {value:?}", at.as_secs_f64())).collect();
            panic!("timed out after {limit:?} waiting until {what}; what it saw:\n{}", history.join("\n"));
        }
        std::thread::sleep(every);
    }
}

/// [`wait_for`] with a probe that only says yes or no.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, limit, Duration::from_millis(250), &mut check, |ok| *ok);
}
