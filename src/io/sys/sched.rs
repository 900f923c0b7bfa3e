//! CPU affinity and scheduling policy.

use std::io;

use super::zeroed;

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU number out of range",
        ));
    }
    let mut set: libc::cpu_set_t = zeroed();
    // SAFETY: cpu is below CPU_SETSIZE, so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    super::check(rc).map(drop)
}

/// Gives the calling thread the lowest real-time priority (`SCHED_FIFO` 1):
/// woken, it runs at once instead of waiting for its turn behind ordinary
/// threads. The kernel's real-time throttling
/// (`kernel.sched_rt_runtime_us`, 95 % by default) keeps a thread that never
/// sleeps from taking the whole CPU.
pub fn set_lowest_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: param is a valid sched_param that outlives the call; pid 0 is
    // the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    super::check(rc).map(drop)
}
