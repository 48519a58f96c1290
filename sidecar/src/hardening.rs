//! Process hardening at start, before any secret is in memory (docs/threat-model.md, "A
//! node-level attacker reading memory, swap or core dumps"):
//! - `PR_SET_DUMPABLE=0`: no core dump, and `/proc/<pid>/mem`, `environ` and ptrace are closed to
//!   other processes of the same UID (the app, in signal mode);
//! - `RLIMIT_CORE=0`, in case something turns dumpable back on;
//! - `mlockall(MCL_CURRENT|MCL_FUTURE)` only when `RLIMIT_MEMLOCK` is unlimited. With a finite
//!   limit (the default under Pod Security "restricted", which forbids `IPC_LOCK`) `MCL_FUTURE`
//!   would make later allocations fail, so we skip it and say so once.
//!
//! - a panic hook that prints where a panic happened but withholds any message formatted at run
//!   time, which could hold a value (`panic!("{x}")`, `expect` on a result); a literal message
//!   cannot, and is printed.
//!
//! `MADV_DONTDUMP` on the individual secret buffers needs `unsafe` (`rustix::mm::madvise` takes a
//! raw pointer) and the workspace denies unsafe code. It is skipped: with the process non-dumpable
//! and `RLIMIT_CORE=0`, no core dump is written at all, which covers what `MADV_DONTDUMP` would.

use rustix::mm::{MlockAllFlags, mlockall};
use rustix::process::{
    DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior, setrlimit,
};

/// What [`harden`] managed to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hardening {
    /// `PR_SET_DUMPABLE=0` took effect.
    pub not_dumpable: bool,
    /// `RLIMIT_CORE` is 0.
    pub no_core: bool,
    /// All memory is locked.
    pub memory_locked: bool,
}

/// Applies every measure that the environment allows, logging one warning for what it could not.
pub(crate) fn harden() -> Hardening {
    let mut h = Hardening::default();
    let mut missing: Vec<String> = Vec::new();
    match set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        Ok(()) => h.not_dumpable = true,
        Err(e) => missing.push(format!("PR_SET_DUMPABLE=0 ({e})")),
    }
    match setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        Ok(()) => h.no_core = true,
        Err(e) => missing.push(format!("RLIMIT_CORE=0 ({e})")),
    }
    let memlock = getrlimit(Resource::Memlock);
    if memlock.current.is_none() {
        match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE) {
            Ok(()) => h.memory_locked = true,
            Err(e) => missing.push(format!("mlockall ({e})")),
        }
    } else {
        missing.push(format!(
            "mlockall (RLIMIT_MEMLOCK is {} bytes, not unlimited; secrets may reach swap on nodes with swap)",
            memlock.current.unwrap_or(0)
        ));
    }
    if !missing.is_empty() {
        tracing::warn!(
            not_applied = %missing.join("; "),
            "some memory protections are unavailable here"
        );
    }
    h
}

/// What the panic hook prints: the location, and the message only when it is a literal.
pub(crate) fn panic_report(info: &std::panic::PanicHookInfo<'_>) -> String {
    let location = info.location().map_or_else(
        || "an unknown location".to_string(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    let message = info
        .payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("(message withheld: it was formatted at run time and may hold secret data)");
    format!("hush-sidecar panicked at {location}: {message}")
}

/// Replaces the default panic hook (which prints the whole message) with [`panic_report`] on
/// stderr. Set before any secret is in memory.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("{}", panic_report(info))));
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_panic_report_withholds_formatted_messages() {
        let canary = format!("CANARY-{}", std::process::id());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        // The hook is process-wide: record only this thread's panics and hand the others (a
        // test failing in parallel) to the previous hook.
        let me = std::thread::current().id();
        let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
            Arc::from(std::panic::take_hook());
        let p2 = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == me {
                s2.lock().unwrap().push(panic_report(info));
            } else {
                p2(info);
            }
        }));
        let c = canary.clone();
        let formatted = std::panic::catch_unwind(move || panic!("value is {c}"));
        let literal = std::panic::catch_unwind(|| panic!("an invariant broke"));
        std::panic::set_hook(Box::new(move |info| previous(info)));
        assert!(formatted.is_err() && literal.is_err());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(!seen[0].contains(&canary), "{}", seen[0]);
        assert!(
            seen[0].contains("hardening.rs") && seen[0].contains("withheld"),
            "{}",
            seen[0]
        );
        assert!(seen[1].ends_with(": an invariant broke"), "{}", seen[1]);
    }

    #[test]
    fn dumpable_and_core_limit_are_set() {
        // Runs in the test process; both calls are allowed to any unprivileged process.
        let h = harden();
        assert!(h.not_dumpable);
        assert!(h.no_core);
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            DumpableBehavior::NotDumpable
        );
        assert_eq!(getrlimit(Resource::Core).current, Some(0));
    }
}
