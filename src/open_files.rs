//! The process's open-files limit: each WebSocket is a descriptor, so a server holding many
//! sockets (a big screen's spectators, thousands of idle players) needs more than the usual
//! soft limit of 1024. At start the soft limit is raised to the hard limit, the most an
//! unprivileged process may take.

/// The open-files limits after raising the soft one to the hard one: `(soft, hard)`, where
/// `soft` is what applies now (unchanged if it could not be raised). `None` where the limit
/// cannot be read.
pub fn raise() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        // `rlim_t` is u64 on Linux, not on every unix.
        #[allow(clippy::unnecessary_cast)]
        Some((lim.rlim_cur as u64, lim.rlim_max as u64))
    }
    #[cfg(not(unix))]
    None
}

/// Descriptors kept for everything but spectators: players, Redis, HTTP, the binary's own.
pub const RESERVED: u64 = 1024;

/// Raises the limit and logs both values (one line); warns when `max_spectators` could take
/// more descriptors than the limit leaves past [`RESERVED`]: spectators past it would be
/// refused by the kernel, without the `503` that tells the page why.
pub fn raise_and_log(max_spectators: u64) {
    let Some((soft, hard)) = raise() else {
        log::warn!("Open files limit: unknown (getrlimit failed)");
        return;
    };
    log::info!("Open files limit: {soft} (hard limit {hard})");
    let room = soft.saturating_sub(RESERVED);
    if max_spectators > room {
        log::warn!(
            "-max-spectators {max_spectators} is above what the open files limit leaves for \
             spectators ({room}): raise the hard limit, or lower -max-spectators"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise().expect("getrlimit works on unix");
        assert_eq!(soft, hard);
    }
}
