//! CPU time of a process, from /proc, for messages per server (and client) CPU-second; and
//! pinning client threads to cores.

use std::time::Duration;

/// Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// User plus system CPU time of process `pid` so far.
pub fn process_cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    parse_stat_cpu(&stat).ok_or_else(|| format!("unexpected /proc/{pid}/stat format"))
}

/// Pins the calling thread to the `index`-th of `cores` (round robin), if any were given.
pub fn pin(cores: &[usize], index: usize) {
    if let Some(&core) = cores.get(index % cores.len().max(1)) {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
}

/// utime + stime from the text of /proc/PID/stat.
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_even_with_odd_names() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(3000)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(process_cpu_time(std::process::id()).is_ok());
    }
}
