//! Process hardening at start, before any secret is in memory (threat-model.md, "A node-level
//! attacker reading memory, swap or core dumps"):
//! - `PR_SET_DUMPABLE=0`: no core dump, and `/proc/<pid>/mem`, `environ` and ptrace are closed to
//!   other processes of the same UID (the app, in signal mode);
//! - `RLIMIT_CORE=0`, in case something turns dumpable back on;
//! - `mlockall(MCL_CURRENT|MCL_FUTURE)` only when `RLIMIT_MEMLOCK` is unlimited. With a finite
//!   limit (the default under Pod Security "restricted", which forbids `IPC_LOCK`) `MCL_FUTURE`
//!   would make later allocations fail, so we skip it and say so once.
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
pub struct Hardening {
    /// `PR_SET_DUMPABLE=0` took effect.
    pub not_dumpable: bool,
    /// `RLIMIT_CORE` is 0.
    pub no_core: bool,
    /// All memory is locked.
    pub memory_locked: bool,
}

/// Applies every measure that the environment allows, logging one warning for what it could not.
pub fn harden() -> Hardening {
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

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

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
