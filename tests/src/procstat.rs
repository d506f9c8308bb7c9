//! Per-process CPU and memory, read from /proc while a run goes on, so the
//! report can say which service the load lands on.

use std::{collections::BTreeMap, time::Instant};

use serde::Serialize;

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`: 100
/// on every mainstream Linux; reading it needs libc, which this crate avoids).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU and memory of one process over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Mean CPU, in percent of one core.
    pub cpu_percent_mean: f64,
    /// Highest CPU over one sampling interval, percent of one core.
    pub cpu_percent_peak: f64,
    /// Largest resident set seen, MiB.
    pub rss_mib_peak: f64,
}

/// utime + stime in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page; utime is 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Track {
    pid: u32,
    first_ticks: u64,
    last_ticks: u64,
    usage: Usage,
}

/// Samples a set of named processes.
pub struct Sampler {
    started: Instant,
    last: Instant,
    tracks: BTreeMap<String, Track>,
}

impl Sampler {
    pub fn new(processes: &[(String, u32)]) -> Self {
        let tracks = processes
            .iter()
            .map(|(name, pid)| {
                let ticks = cpu_ticks(*pid).unwrap_or(0);
                let track = Track {
                    pid: *pid,
                    first_ticks: ticks,
                    last_ticks: ticks,
                    usage: Usage::default(),
                };
                (name.clone(), track)
            })
            .collect();
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            tracks,
        }
    }

    /// Takes one sample of every process.
    pub fn sample(&mut self) {
        let now = Instant::now();
        let interval = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        for track in self.tracks.values_mut() {
            if let Some(ticks) = cpu_ticks(track.pid) {
                if interval > 0.0 {
                    let pct = (ticks.saturating_sub(track.last_ticks) as f64 / TICKS_PER_SECOND)
                        / interval
                        * 100.0;
                    track.usage.cpu_percent_peak = track.usage.cpu_percent_peak.max(pct);
                }
                track.last_ticks = ticks;
            }
            if let Some(rss) = rss_mib(track.pid) {
                track.usage.rss_mib_peak = track.usage.rss_mib_peak.max(rss);
            }
        }
    }

    /// The usage of every process since the sampler started.
    pub fn finish(mut self) -> BTreeMap<String, Usage> {
        self.sample();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        self.tracks
            .into_iter()
            .map(|(name, mut t)| {
                t.usage.cpu_percent_mean = (t.last_ticks.saturating_sub(t.first_ticks) as f64
                    / TICKS_PER_SECOND)
                    / elapsed
                    * 100.0;
                (name, t.usage)
            })
            .collect()
    }
}
