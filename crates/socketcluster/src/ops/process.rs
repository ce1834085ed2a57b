//! This process's CPU time, resident memory and open file descriptors, read from `/proc`
//! (Linux; zeros elsewhere).

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
}

/// Reads this process's numbers now.
pub fn read() -> ProcessStats {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks.max(1.0))
        })
        .unwrap_or(0.0);
    let resident_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split(' ').nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * rustix::param::page_size() as u64);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    ProcessStats {
        cpu_seconds,
        resident_bytes,
        open_fds,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_real_numbers() {
        // Burn ~0.1 s of CPU so the tick counter (10 ms) moves.
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let stats = super::read();
        assert!(spin > 0);
        assert!(stats.cpu_seconds > 0.0, "{stats:?}");
        assert!(stats.resident_bytes > 1 << 20, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}");
    }
}
