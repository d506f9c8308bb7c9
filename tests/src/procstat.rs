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
    /// CPU time used over the run (user + system), seconds.
    pub cpu_seconds: f64,
}

/// utime + stime in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    cpu_ticks_of(&format!("/proc/{pid}/stat"))
}

/// utime + stime in ticks, from a `stat` file of a process or a thread.
fn cpu_ticks_of(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page; utime is 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_ticks(pid).map(|ticks| ticks as f64 / TICKS_PER_SECOND)
}

/// CPU time, in seconds, of the threads of `pid` whose name starts with
/// `prefix` (threads are named by their creator, e.g. a tokio runtime's
/// `thread_name`), so two parts of one process can be measured apart.
pub fn threads_cpu_seconds(pid: u32, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if !comm.trim_end().starts_with(prefix) {
                return None;
            }
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            cpu_ticks_of(&format!("/proc/{pid}/task/{tid}/stat"))
        })
        .map(|ticks| ticks as f64 / TICKS_PER_SECOND)
        .sum()
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

/// Every process whose command name is `comm` (PostgreSQL's backends, which
/// come and go with the services' pools), counted as one party.
struct Group {
    comm: String,
    /// pid → (ticks when first seen, ticks when last seen).
    pids: BTreeMap<u32, (u64, u64)>,
    usage: Usage,
}

impl Group {
    /// Reads every live member; one born after the sampler started counts from zero.
    fn sample(&mut self, born_after_start: bool, interval: f64) {
        let mut delta = 0u64;
        let mut rss = 0.0;
        for pid in pids_named(&self.comm) {
            let Some(ticks) = cpu_ticks(pid) else {
                continue;
            };
            let entry = self.pids.entry(pid).or_insert(if born_after_start {
                (0, 0)
            } else {
                (ticks, ticks)
            });
            delta += ticks.saturating_sub(entry.1);
            entry.1 = ticks;
            rss += rss_mib(pid).unwrap_or(0.0);
        }
        if interval > 0.0 {
            let pct = delta as f64 / TICKS_PER_SECOND / interval * 100.0;
            self.usage.cpu_percent_peak = self.usage.cpu_percent_peak.max(pct);
        }
        self.usage.rss_mib_peak = self.usage.rss_mib_peak.max(rss);
    }

    fn ticks_used(&self) -> u64 {
        self.pids
            .values()
            .map(|(first, last)| last.saturating_sub(*first))
            .sum()
    }
}

/// The pids whose `/proc/<pid>/comm` is `comm`.
fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Samples a set of named processes.
pub struct Sampler {
    started: Instant,
    last: Instant,
    tracks: BTreeMap<String, Track>,
    groups: BTreeMap<String, Group>,
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
            groups: BTreeMap::new(),
        }
    }

    /// Also samples every process named `comm` (e.g. `postgres`: the server
    /// and all its backends, whoever they serve) as one party called `name`.
    pub fn with_group(mut self, name: &str, comm: &str) -> Self {
        let mut group = Group {
            comm: comm.to_owned(),
            pids: BTreeMap::new(),
            usage: Usage::default(),
        };
        group.sample(false, 0.0);
        self.groups.insert(name.to_owned(), group);
        self
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
        for group in self.groups.values_mut() {
            group.sample(true, interval);
        }
    }

    /// The usage of every process since the sampler started.
    pub fn finish(mut self) -> BTreeMap<String, Usage> {
        self.sample();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let with_time = |mut usage: Usage, ticks: u64| {
            usage.cpu_seconds = ticks as f64 / TICKS_PER_SECOND;
            usage.cpu_percent_mean = usage.cpu_seconds / elapsed * 100.0;
            usage
        };
        let groups = self.groups.into_iter().map(|(name, g)| {
            let ticks = g.ticks_used();
            (name, with_time(g.usage, ticks))
        });
        self.tracks
            .into_iter()
            .map(|(name, t)| {
                let ticks = t.last_ticks.saturating_sub(t.first_ticks);
                (name, with_time(t.usage, ticks))
            })
            .chain(groups)
            .collect()
    }
}

/// Machine-wide CPU time from the first line of /proc/stat, in ticks. On a
/// virtual machine `steal` is time the hypervisor gave our virtual CPUs to
/// someone else: every process here stalled for it, whatever it was doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub idle: u64,
    pub steal: u64,
}

impl MachineTicks {
    /// The counters now, or `None` where /proc/stat cannot be read.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal [guest guest_nice]:
        // guest time is already counted in user.
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Some(Self {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            idle: field(3) + field(4),
            steal: field(7),
        })
    }

    /// Shares of the time between `earlier` and `self`: (busy, steal), each in
    /// percent of all CPU time of the machine.
    pub fn shares_since(&self, earlier: &Self) -> (f64, f64) {
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let idle = self.idle.saturating_sub(earlier.idle) as f64;
        let steal = self.steal.saturating_sub(earlier.steal) as f64;
        let total = (busy + idle + steal).max(1.0);
        (busy / total * 100.0, steal / total * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A process born after the sampler started is counted from its first tick:
    /// its whole CPU time lands in the group's figure.
    #[test]
    fn a_group_counts_the_processes_of_its_name_born_during_the_run() {
        let name = format!("ltburn{}", std::process::id() % 100_000);
        let link = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
        let mut sampler = Sampler::new(&[]).with_group("burners", &name);
        let mut child = std::process::Command::new(&link)
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = false;
        while Instant::now() < deadline {
            sampler.sample();
            if sampler.groups["burners"].ticks_used() >= 10 {
                seen = true;
                break;
            }
            std::thread::yield_now();
        }
        let usage = sampler.finish();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&link);
        assert!(seen, "the burner's CPU never reached the group");
        assert!(
            usage["burners"].cpu_seconds >= 0.1,
            "{:?}",
            usage["burners"]
        );
    }
}
