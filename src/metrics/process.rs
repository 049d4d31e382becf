//! What the process itself weighs, for `/metrics`: resident memory from
//! `/proc/self/statm` (pages) times the page size, which is not always
//! 4 KiB (the Raspberry Pi 5's kernel uses 16 KiB pages).

/// Resident set size in bytes, or `None` when `/proc` cannot tell.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    resident_pages(&statm)?.checked_mul(page_size()?)
}

/// The second field of `statm`: resident pages.
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf reads a constant of the running kernel; no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_is_read_as_resident_pages_times_page_size() {
        assert_eq!(resident_pages("2841 512 300 100 0 700 0\n"), Some(512));
        assert_eq!(resident_pages("2841"), None);
        assert_eq!(resident_pages("2841 x"), None);
        let rss = resident_bytes().expect("this test runs on Linux with /proc");
        assert!(rss > 0 && rss % page_size().unwrap() == 0, "{rss}");
    }
}
