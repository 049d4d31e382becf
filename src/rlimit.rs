//! The open-file limit: raised from the soft limit to the hard one at start.
//!
//! Every connection is a file descriptor, and the default soft limit (1 024)
//! is below what a connection swarm reaches before the connection table
//! evicts it; the hard limit (under systemd, the unit's `LimitNOFILE=`) is
//! what the administrator allows. Raising the soft limit up to the hard one
//! needs no privilege. Under the unit's system-call filter (`~@resources`)
//! `setrlimit` is refused, which is fine: `LimitNOFILE=` sets both limits.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs the result once.
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "cannot read the open-file limit");
        return;
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    if soft >= hard {
        tracing::debug!(limit = soft, "open-file limit already at its maximum");
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::info!(from = soft, to = hard, "raised the open-file limit");
    } else {
        let error = std::io::Error::last_os_error();
        tracing::info!(limit = soft, hard, %error, "cannot raise the open-file limit; keeping it");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_ends_at_the_hard_limit() {
        super::raise_open_files();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
