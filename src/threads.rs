//! A thread's OS priority: the spectators' workers (`-spectator-addr`) run at a higher
//! niceness than the players', and so do the load tool's spectator and idle clients.

/// Raises the calling thread's niceness to `nice` (0 to 19): when the machine is busy, it gets
/// less CPU than normal threads. On Linux niceness is a thread's own, and threads it starts
/// inherit it. Elsewhere, and when refused, nothing changes.
pub fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call about the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
