//! Reads a running process's memory (`/proc/PID/maps` + `/proc/PID/mem`, as root) and finds every
//! copy of a byte string, naming the mapping each copy lives in. The zeroization tests use it to
//! prove that after a rotation no copy of the old value is left in the sidecar: not in a live
//! buffer, not in freed heap memory, not on a stack. It reads what the kernel would hand a
//! debugger, so it sees what an attacker with the node's root (or a core dump) would see.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// One copy found in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The `/proc/PID/maps` line of the mapping that holds it.
    pub mapping: String,
    /// Its address.
    pub address: u64,
}

/// What one scan read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every copy of the needle.
    pub copies: Vec<Copy>,
    /// Bytes read (so a test can check the scan was not vacuous).
    pub bytes_read: u64,
    /// Readable mappings that could not be read (e.g. `[vvar]`), by their maps line.
    pub unreadable: Vec<String>,
}

/// Finds every copy of `needle` in the readable mappings of process `pid`.
pub fn scan(pid: u32, needle: &[u8]) -> Scan {
    assert!(!needle.is_empty(), "an empty needle matches everywhere");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps (the scan needs root): {e}"));
    let mut mem = File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("open /proc/{pid}/mem (the scan needs root): {e}"));
    let mut out = Scan::default();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let mut region = vec![0u8; (end - start) as usize];
        let read = mem
            .seek(SeekFrom::Start(start))
            .and_then(|_| mem.read_exact(&mut region));
        if read.is_err() {
            out.unreadable.push(line.to_string());
            continue;
        }
        out.bytes_read += region.len() as u64;
        let mut from = 0;
        while let Some(i) = find(&region[from..], needle) {
            out.copies.push(Copy {
                mapping: line.to_string(),
                address: start + (from + i) as u64,
            });
            from += i + 1;
        }
    }
    out
}

/// Fails with the mapping of every copy of each needle found in `pid`'s memory; also fails when the
/// scan read less than 1 MiB (it would prove nothing).
pub fn assert_no_copies(pid: u32, needles: &[&str]) {
    let mut report = Vec::new();
    for needle in needles {
        let s = scan(pid, needle.as_bytes());
        assert!(
            s.bytes_read > 1 << 20,
            "the scan of {pid} read only {} bytes",
            s.bytes_read
        );
        for c in &s.copies {
            report.push(format!("{needle} at {:#x} in {}", c.address, c.mapping));
        }
    }
    assert!(
        report.is_empty(),
        "{} copies of the old value survive in the memory of process {pid}:\n{}",
        report.len(),
        report.join("\n")
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_value_held_by_this_process() {
        let held = format!("MEMSCAN-{}", std::process::id()).into_bytes();
        let s = scan(std::process::id(), &held);
        assert!(s.bytes_read > 0);
        assert!(
            !s.copies.is_empty(),
            "the scan must see a live copy; it read {} bytes",
            s.bytes_read
        );
        std::hint::black_box(&held);
    }
}
