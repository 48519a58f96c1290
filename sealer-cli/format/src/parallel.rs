//! Spreads independent per-value work over the machine's cores. Every sealed value is its own age
//! file (so that the age CLI can open any one value alone), which costs one X25519 key wrap per value
//! and recipient when sealing and one unwrap per value when opening: most of the time of a large
//! seal or unseal (docs/benchmarks.md). The values do not depend on each other, so a Secret with
//! many keys is split into one contiguous chunk per core, processed on scoped threads, and the
//! results are put back in their original order; the first error in that order wins, as it would
//! in a plain loop. Small Secrets stay on the calling thread, where a spawn would cost more than it
//! saves.

use std::num::NonZeroUsize;
use std::thread;

/// Items per thread below which splitting does not pay (a value takes ~0.1 ms, a spawn ~0.03 ms).
const MIN_ITEMS_PER_THREAD: usize = 16;

/// `items.iter().map(f).collect()`, on up to `available_parallelism()` scoped threads.
pub(crate) fn try_map<T, R, E, F>(items: &[T], f: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(&T) -> Result<R, E> + Sync,
{
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores.min(items.len() / MIN_ITEMS_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    let chunk = items.len().div_ceil(threads);
    thread::scope(|scope| {
        // The first chunk runs on this thread; a chunk whose thread cannot be created runs here too.
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let mut spawned = Vec::new();
        for c in chunks {
            let work = move || c.iter().map(f).collect::<Result<Vec<R>, E>>();
            match thread::Builder::new().spawn_scoped(scope, work) {
                Ok(handle) => spawned.push(Ok(handle)),
                Err(_) => spawned.push(Err(c)),
            }
        }
        let mut out = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f).collect::<Result<Vec<R>, E>>()?);
        for s in spawned {
            let part = match s {
                Ok(handle) => match handle.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(c) => c.iter().map(f).collect(),
            };
            out.extend(part?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled: Result<Vec<u32>, String> = try_map(&items, |i| Ok(i * 2));
        assert_eq!(
            doubled.unwrap(),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );

        let failed: Result<Vec<u32>, u32> =
            try_map(
                &items,
                |&i| if i == 700 || i == 900 { Err(i) } else { Ok(i) },
            );
        assert_eq!(failed.unwrap_err(), 700);

        let small: Result<Vec<u32>, u32> = try_map(&items[..3], |&i| Ok(i + 1));
        assert_eq!(small.unwrap(), vec![1, 2, 3]);
    }
}
