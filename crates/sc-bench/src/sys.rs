//! The operating system side of a benchmark: file descriptor limit, CPU time of the generator,
//! resident memory of the server under test (Linux `/proc`).

use std::fs;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so that one generator can hold tens of
/// thousands of sockets. Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    // An "unlimited" hard limit still stops at the kernel's `nr_open` for descriptors.
    let target = limit.maximum.or_else(|| {
        fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
    });
    if target.is_some() && limit.current != target {
        let raised = Rlimit {
            current: target,
            maximum: limit.maximum,
        };
        // Failure only leaves the old limit in place; the caller reports what is in force.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// CPU time used by this process so far (all threads), split as the kernel accounts it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// Time spent in user space.
    pub user: Duration,
    /// Time spent in the kernel on behalf of the process (socket I/O mostly).
    pub system: Duration,
}

impl CpuTimes {
    /// Reads this process's CPU times from `/proc/self/stat`; zero if unavailable.
    pub fn now() -> CpuTimes {
        fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| parse_stat_times(&stat, rustix::param::clock_ticks_per_second()))
            .unwrap_or_default()
    }

    /// CPU time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User plus system time.
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Measures the generator's CPU use over one phase.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    cpu: CpuTimes,
    wall: Instant,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start() -> CpuMeter {
        CpuMeter {
            cpu: CpuTimes::now(),
            wall: Instant::now(),
        }
    }

    /// CPU and wall-clock time since [`CpuMeter::start`].
    pub fn finish(&self) -> CpuUse {
        CpuUse {
            times: CpuTimes::now().since(self.cpu),
            wall: self.wall.elapsed(),
        }
    }
}

/// CPU time used over a wall-clock interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// CPU time used.
    pub times: CpuTimes,
    /// Length of the interval.
    pub wall: Duration,
}

impl CpuUse {
    /// Average number of cores kept busy.
    pub fn cores(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            self.times.total().as_secs_f64() / wall
        } else {
            0.0
        }
    }
}

/// Extracts `utime` and `stime` (fields 14 and 15) from a `/proc/<pid>/stat` line. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_times(stat: &str, ticks_per_second: u64) -> Option<CpuTimes> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = ticks_per_second.max(1);
    let to_duration = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks);
    Some(CpuTimes {
        user: to_duration(user),
        system: to_duration(system),
    })
}

/// Resident set size in bytes of process `pid` and all its descendants (`VmRSS` summed over the
/// process tree, children found through `/proc/<pid>/task/*/children`). `None` if `pid` does not
/// exist.
pub fn tree_rss(pid: u32) -> Option<u64> {
    let mut total = process_rss(pid)?;
    let mut stack = children(pid);
    let mut visited = vec![pid];
    while let Some(child) = stack.pop() {
        if visited.contains(&child) {
            continue;
        }
        visited.push(child);
        total += process_rss(child).unwrap_or(0);
        stack.extend(children(child));
    }
    Some(total)
}

/// CPU time (user + system) used so far by process `pid` and all its descendants. `None` if
/// `pid` does not exist.
pub fn tree_cpu(pid: u32) -> Option<Duration> {
    let ticks = rustix::param::clock_ticks_per_second();
    let read = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_stat_times(&stat, ticks))
            .map(CpuTimes::total)
    };
    let mut total = read(pid)?;
    let mut stack = children(pid);
    let mut visited = vec![pid];
    while let Some(child) = stack.pop() {
        if visited.contains(&child) {
            continue;
        }
        visited.push(child);
        total += read(child).unwrap_or_default();
        stack.extend(children(child));
    }
    Some(total)
}

/// Resident set size in bytes of this process.
pub fn own_rss() -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
}

fn process_rss(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_vm_rss(&s))
}

/// The `VmRSS:   1234 kB` line of `/proc/<pid>/status`, in bytes. Kernel threads and zombies have
/// no such line; they count as zero.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A short description of the machine: `<nproc> x <CPU model>`.
pub fn machine_summary() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} x {model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_skip_tricky_command_names() {
        let stat = "4242 (sc bench) (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 \
                    0 0 18446744073709551615";
        let t = parse_stat_times(stat, 100).unwrap();
        assert_eq!(t.user, Duration::from_millis(2500));
        assert_eq!(t.system, Duration::from_millis(750));
        assert_eq!(t.total(), Duration::from_millis(3250));
        assert!(parse_stat_times("garbage", 100).is_none());
    }

    #[test]
    fn vm_rss_in_bytes() {
        let status = "Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss(status), Some(51200 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        assert!(tree_rss(std::process::id()).unwrap() > 0);
        assert!(own_rss().unwrap() > 0);
        let later = CpuTimes::now();
        assert_eq!(later.since(later), CpuTimes::default());
        let busy = CpuUse {
            times: CpuTimes {
                user: Duration::from_secs(3),
                system: Duration::from_secs(1),
            },
            wall: Duration::from_secs(2),
        };
        assert_eq!(busy.cores(), 2.0);
        assert_eq!(CpuUse::default().cores(), 0.0);
    }
}
