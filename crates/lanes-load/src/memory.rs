//! Resident memory of a process, from /proc, for the server's memory per connection.

/// The resident set size (VmRSS) of process `pid` now, in KiB.
pub fn process_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    parse_vm_rss_kib(&status).ok_or_else(|| format!("no VmRSS line in /proc/{pid}/status"))
}

/// The value of the `VmRSS:` line (`VmRSS:    12345 kB`) in the text of /proc/PID/status, in
/// KiB. `None` when the line is missing (a kernel thread, a zombie) or not a number in kB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\techo\nVmPeak:\t  200000 kB\nVmRSS:\t    5312 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(5312));
        for bad in [
            "Name:\tkthreadd\n",
            "VmRSS:\t12 MB\n",
            "VmRSS:\n",
            "VmRSS: x kB\n",
        ] {
            assert_eq!(parse_vm_rss_kib(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_this_process() {
        assert!(process_rss_kib(std::process::id()).is_ok_and(|kib| kib > 0));
    }
}
