//! Retry timing for the refresh loop: a jittered exponential backoff built from a validated
//! constructor, and the "refresh at about 2/3 of a TTL" rule. Both follow Vault's LifetimeWatcher
//! (`api/lifetime_watcher.go`): the error backoff starts small, doubles, caps at five minutes with a
//! randomisation factor of 0.5, and never waits past the end of the lease it is trying to save;
//! renewals happen at about two thirds of a TTL, with jitter so that a fleet of pods started together
//! does not hit the server in the same second. Whether an error deserves a retry at all is decided by
//! [`ErrorClass`], which every provider error carries.
//!
//! It lives in this lightweight crate, not in the sidecar's runtime, because the injector's
//! self-managed TLS renews its certificate by the same rule.

use std::time::Duration;

use crate::error::{Error, Result};

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A connection error, a timeout, 5xx or 429: retry with backoff, keep serving the last good
    /// files.
    Transient,
    /// 403 after a fresh login, 404, a missing field, a malformed response: retrying at once will
    /// not help. Report it, keep the last good files, and try again at the next refresh.
    Permanent,
}

impl ErrorClass {
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }

    /// Classifies an HTTP status from a secret store.
    pub fn from_http_status(status: u16) -> ErrorClass {
        match status {
            429 | 500..=599 | 408 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Jittered exponential backoff. Build it with [`Backoff::new`], which checks the bounds.
#[derive(Clone, Debug)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    randomization: f64,
    next: Duration,
}

/// Shortest first delay accepted by [`Backoff::new`].
pub const MIN_START: Duration = Duration::from_secs(1);
/// Longest first delay accepted by [`Backoff::new`].
pub const MAX_START: Duration = Duration::from_secs(10);
/// The cap Vault uses.
pub const DEFAULT_CAP: Duration = Duration::from_secs(300);
/// The randomisation factor Vault uses.
pub const DEFAULT_RANDOMIZATION: f64 = 0.5;

impl Backoff {
    /// A backoff that starts at `start` (1 s to 10 s), doubles, and is capped at `cap` (at least
    /// `start`, at most one hour); each delay is randomised by ±`randomization` (0 to 1).
    pub fn new(start: Duration, cap: Duration, randomization: f64) -> Result<Backoff> {
        let bad = |reason: &str| Error::Config {
            field: "backoff".into(),
            reason: reason.into(),
        };
        if !(MIN_START..=MAX_START).contains(&start) {
            return Err(bad("the first delay must be between 1 and 10 seconds"));
        }
        if cap < start || cap > Duration::from_secs(3600) {
            return Err(bad("the cap must be between the first delay and one hour"));
        }
        if !(0.0..=1.0).contains(&randomization) {
            return Err(bad("the randomisation factor must be between 0 and 1"));
        }
        Ok(Backoff {
            start,
            cap,
            randomization,
            next: start,
        })
    }

    /// Vault's defaults with a 1 s first delay (a sidecar's first fetch gates the app's start).
    pub fn standard() -> Backoff {
        Backoff {
            start: MIN_START,
            cap: DEFAULT_CAP,
            randomization: DEFAULT_RANDOMIZATION,
            next: MIN_START,
        }
    }

    /// The next delay, bounded by `remaining` (for example what is left of a lease or of a
    /// deadline), and advances the sequence.
    pub fn next_delay(&mut self, remaining: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        let d = jitter(base, self.randomization).min(self.cap);
        match remaining {
            Some(r) => d.min(r),
            None => d,
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

/// `d` randomised uniformly in `[d*(1-f), d*(1+f)]`.
pub fn jitter(d: Duration, f: f64) -> Duration {
    let r = 1.0 - f + fastrand::f64() * 2.0 * f;
    d.mul_f64(r.max(0.0))
}

/// When to renew something that lives for `ttl`: at about two thirds of it, minus up to a tenth
/// of the TTL as jitter, and never sooner than `min` (unless the TTL itself is shorter).
pub fn renew_after(ttl: Duration, min: Duration) -> Duration {
    let two_thirds = ttl.mul_f64(2.0 / 3.0);
    let jittered = two_thirds.saturating_sub(ttl.mul_f64(0.1 * fastrand::f64()));
    jittered.max(min.min(ttl / 2))
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_rejects_bad_bounds() {
        let s = Duration::from_secs;
        assert!(Backoff::new(s(0), s(300), 0.5).is_err());
        assert!(Backoff::new(s(11), s(300), 0.5).is_err());
        assert!(Backoff::new(s(5), s(4), 0.5).is_err());
        assert!(Backoff::new(s(5), s(4000), 0.5).is_err());
        assert!(Backoff::new(s(5), s(300), 1.5).is_err());
        assert!(Backoff::new(s(5), s(300), -0.1).is_err());
        assert!(Backoff::new(s(10), s(300), 0.5).is_ok());
    }

    #[test]
    fn delays_double_within_jitter_and_cap() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300), 0.5).unwrap();
        let mut base = 10.0_f64;
        for _ in 0..12 {
            let d = b.next_delay(None).as_secs_f64();
            assert!(
                d >= base * 0.5 - 1e-9 && d <= (base * 1.5).min(300.0) + 1e-9,
                "{d} {base}"
            );
            base = (base * 2.0).min(300.0);
        }
        b.reset();
        let d = b.next_delay(None).as_secs_f64();
        assert!((5.0..=15.0).contains(&d));
    }

    #[test]
    fn delay_is_bounded_by_remaining_lease() {
        let mut b = Backoff::standard();
        for _ in 0..5 {
            b.next_delay(None);
        }
        assert_eq!(
            b.next_delay(Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
    }

    #[test]
    fn renewal_is_near_two_thirds() {
        for _ in 0..100 {
            let r = renew_after(Duration::from_secs(3600), Duration::from_secs(5)).as_secs_f64();
            assert!((2040.0..=2400.0).contains(&r), "{r}");
        }
        // A tiny TTL never yields a zero wait, and never exceeds the TTL.
        let r = renew_after(Duration::from_secs(2), Duration::from_secs(5));
        assert!(r >= Duration::from_secs(1) && r <= Duration::from_secs(2));
    }

    #[test]
    fn http_status_classes() {
        assert_eq!(ErrorClass::from_http_status(503), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(429), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(404), ErrorClass::Permanent);
        assert_eq!(ErrorClass::from_http_status(403), ErrorClass::Permanent);
        assert_eq!(ErrorClass::from_http_status(400), ErrorClass::Permanent);
    }
}
