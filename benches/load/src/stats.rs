//! Counters shared by the drivers, an ack latency histogram, and the relay process's CPU
//! time and memory from /proc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

#[derive(Debug)]
pub struct Stats {
    /// Relayed events that reached a receiver.
    pub received: AtomicU64,
    /// Emits sent.
    pub sent: AtomicU64,
    /// Acks (of emits or stream chunks) that came back.
    pub acked: AtomicU64,
    /// Stream bytes that reached a receiver.
    pub stream_bytes: AtomicU64,
    /// SERVER_ERRORs and failed replies.
    pub errors: AtomicU64,
    /// Ack round trips, in nanoseconds.
    pub latency: Mutex<Histogram<u64>>,
    pub first_error: Mutex<Option<String>>,
    /// Woken whenever a native reader counted stream bytes.
    pub stream_progress: tokio::sync::Notify,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1_000, 120_000_000_000, 3).expect("bounds"),
            ),
            first_error: Mutex::new(None),
            stream_progress: tokio::sync::Notify::new(),
        }
    }
}

impl Stats {
    pub fn record_latency(&self, d: Duration) {
        let ns = (d.as_nanos() as u64).clamp(1_000, 120_000_000_000);
        self.latency
            .lock()
            .expect("histogram")
            .saturating_record(ns);
    }

    pub fn error(&self, what: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("first error");
        if first.is_none() {
            *first = Some(what.into());
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            stream_bytes: self.stream_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// p50, p99, p99.9 of the ack round trips so far.
    pub fn percentiles(&self) -> Option<[Duration; 3]> {
        let h = self.latency.lock().expect("histogram");
        if h.is_empty() {
            return None;
        }
        let q = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
        Some([q(0.5), q(0.99), q(0.999)])
    }

    pub fn reset_latency(&self) {
        self.latency.lock().expect("histogram").reset();
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub received: u64,
    pub sent: u64,
    pub acked: u64,
    pub stream_bytes: u64,
    pub errors: u64,
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, o: Snapshot) -> Snapshot {
        Snapshot {
            received: self.received - o.received,
            sent: self.sent - o.sent,
            acked: self.acked - o.acked,
            stream_bytes: self.stream_bytes - o.stream_bytes,
            errors: self.errors - o.errors,
        }
    }
}

/// CPU time (user + system) of a process so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are counted from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ... utime is field 14 of the file, 11 here; stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = clock_ticks();
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz))
}

/// Resident memory of a process (`VmRSS` of `/proc/PID/status`), in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Raises this process's open-file limit to at least `want` (children inherit it). As root
/// the hard limit is raised too; otherwise the soft limit goes up to the hard one.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let wanted = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: a valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return want;
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } == 0 {
        lim.rlim_max
    } else {
        lim.rlim_cur
    }
}

pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}
