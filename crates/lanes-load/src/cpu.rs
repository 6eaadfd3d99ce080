//! CPU time of a process, from /proc, for messages per server (and client) CPU-second; the
//! machine's busy time, to see what else ran; and pinning client threads to cores.

use std::time::Duration;

/// Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// CPU time in user mode, and in all (user mode plus kernel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// User-mode time (for the machine: user plus nice).
    pub user: Duration,
    /// User plus kernel time (for the machine: every busy state, see [`machine_cpu_times`]).
    pub total: Duration,
}

impl CpuTimes {
    /// The time spent between `earlier` and `self`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

/// User plus system CPU time of process `pid` so far.
pub fn process_cpu_time(pid: u32) -> Result<Duration, String> {
    process_cpu_times(pid).map(|t| t.total)
}

/// User and total CPU time of process `pid` so far.
pub fn process_cpu_times(pid: u32) -> Result<CpuTimes, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    parse_stat_times(&stat).ok_or_else(|| format!("unexpected /proc/{pid}/stat format"))
}

/// The CPU time the whole machine has spent so far, over all CPUs, from the first line of
/// /proc/stat: user is user plus nice; total adds system, irq, softirq and steal (idle and
/// iowait are not counted).
pub fn machine_cpu_times() -> Result<CpuTimes, String> {
    let stat = std::fs::read_to_string("/proc/stat")
        .map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    parse_machine_times(&stat).ok_or_else(|| "unexpected /proc/stat format".to_string())
}

/// The times in the `cpu` line of the text of /proc/stat (see [`machine_cpu_times`]).
pub fn parse_machine_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let &[user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = ticks.as_slice() else {
        return None;
    };
    Some(CpuTimes {
        user: ticks_to_duration(user + nice),
        total: ticks_to_duration(user + nice + system + irq + softirq + steal),
    })
}

/// Pins the calling thread to the `index`-th of `cores` (round robin), if any were given.
pub fn pin(cores: &[usize], index: usize) {
    if let Some(&core) = cores.get(index % cores.len().max(1)) {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
}

/// utime + stime from the text of /proc/PID/stat.
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    parse_stat_times(stat).map(|t| t.total)
}

/// utime, and utime + stime, from the text of /proc/PID/stat.
pub fn parse_stat_times(stat: &str) -> Option<CpuTimes> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: ticks_to_duration(utime),
        total: ticks_to_duration(utime + stime),
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_even_with_odd_names() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(3000)));
        assert_eq!(
            parse_stat_times(stat),
            Some(CpuTimes {
                user: Duration::from_millis(2500),
                total: Duration::from_millis(3000)
            })
        );
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn parses_the_machine_times() {
        let stat = "cpu  100 5 50 1000 7 1 4 2 0 0\ncpu0 50 2 25 500 3 0 2 1 0 0\n";
        assert_eq!(
            parse_machine_times(stat),
            Some(CpuTimes {
                user: Duration::from_millis(1050),
                total: Duration::from_millis(1620)
            })
        );
        assert_eq!(parse_machine_times("cpu  1 2 3\n"), None);
        assert_eq!(parse_machine_times("intr 1 2 3 4 5 6 7 8\n"), None);
        let earlier = machine_cpu_times().unwrap();
        let later = machine_cpu_times().unwrap();
        assert!(later.since(earlier).total <= Duration::from_secs(1));
    }

    #[test]
    fn reads_this_process() {
        assert!(process_cpu_time(std::process::id()).is_ok());
    }
}
