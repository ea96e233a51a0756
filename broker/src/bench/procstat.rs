//! Samples a process's CPU time and resident memory from /proc, so results include what the
//! broker spent, not only what the client observed (the load tool shares the machine's cores).

/// One sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second of /proc/<pid>/stat; USER_HZ is 100 on every Linux configuration
/// in use.
const TICKS_PER_S: f64 = 100.0;

/// Samples `pid`, or `None` when /proc has no such process (or no /proc at all).
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some(Sample {
        cpu_s: (utime + stime) / TICKS_PER_S,
        rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("linux /proc");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_s >= 0.0);
        assert_eq!(sample(u32::MAX), None);
    }
}
