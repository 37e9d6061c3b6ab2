//! Per-shader GPU timings. In profiling mode each dispatch gets its own compute pass with
//! begin/end timestamps; after each submit the timestamps are resolved and folded into a table
//! keyed by kernel label (family + specialization). Without TIMESTAMP_QUERY the profiler falls
//! back to wall-clock time per submit and says so.

use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Default, Clone, Debug)]
pub struct KernelStat {
    pub calls: u64,
    pub total_ns: f64,
    pub flops: f64,
    pub bytes: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TraceEvent {
    pub name: String,
    pub ts_us: f64,
    pub dur_us: f64,
}

#[derive(Default)]
pub struct Profiler {
    pub stats: HashMap<String, KernelStat>,
    /// Wall-clock nanoseconds of submits (fallback mode, or totals).
    pub wall_ns: f64,
    pub timestamps: bool,
    pub trace: Option<Vec<TraceEvent>>,
    pub suspicious: bool,
    trace_clock_us: f64,
}

impl Profiler {
    pub fn new(timestamps: bool, trace: bool) -> Self {
        Self {
            timestamps,
            trace: trace.then(Vec::new),
            ..Default::default()
        }
    }

    pub fn record(&mut self, label: &str, ns: f64, flops: f64, bytes: f64) {
        if !(ns.is_finite()) || ns < 0.0 {
            self.suspicious = true;
        }
        let e = self.stats.entry(label.to_string()).or_default();
        e.calls += 1;
        e.total_ns += ns.max(0.0);
        e.flops += flops;
        e.bytes += bytes;
        if let Some(t) = self.trace.as_mut() {
            t.push(TraceEvent {
                name: label.to_string(),
                ts_us: self.trace_clock_us,
                dur_us: ns.max(0.0) / 1e3,
            });
            self.trace_clock_us += ns.max(0.0) / 1e3;
        }
    }

    pub fn reset(&mut self) {
        self.stats.clear();
        self.wall_ns = 0.0;
        self.suspicious = false;
        if let Some(t) = self.trace.as_mut() {
            t.clear();
        }
        self.trace_clock_us = 0.0;
    }

    /// Rows sorted by total time, descending.
    pub fn rows(&self) -> Vec<(String, KernelStat)> {
        let mut v: Vec<_> = self
            .stats
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        v.sort_by(|a, b| b.1.total_ns.total_cmp(&a.1.total_ns));
        v
    }

    pub fn table(&self) -> String {
        let rows = self.rows();
        let total: f64 = rows.iter().map(|r| r.1.total_ns).sum();
        let mut s = String::new();
        if !self.timestamps {
            let _ = writeln!(
                s,
                "note: the adapter has no TIMESTAMP_QUERY; times below are wall-clock per submit, not per shader"
            );
        }
        if self.suspicious {
            let _ = writeln!(
                s,
                "warning: some GPU timestamps were zero or non-monotonic; per-shader times are unreliable"
            );
        }
        let _ = writeln!(
            s,
            "{:<58} {:>7} {:>10} {:>10} {:>6} {:>9} {:>8}",
            "kernel", "calls", "total ms", "mean us", "%", "GFLOP/s", "GB/s"
        );
        for (k, st) in rows {
            let secs = st.total_ns / 1e9;
            let gf = if secs > 0.0 {
                st.flops / secs / 1e9
            } else {
                0.0
            };
            let gb = if secs > 0.0 {
                st.bytes / secs / 1e9
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "{:<58} {:>7} {:>10.3} {:>10.1} {:>6.1} {:>9.2} {:>8.2}",
                truncate(&k, 58),
                st.calls,
                st.total_ns / 1e6,
                st.total_ns / 1e3 / st.calls.max(1) as f64,
                if total > 0.0 {
                    100.0 * st.total_ns / total
                } else {
                    0.0
                },
                gf,
                gb
            );
        }
        let _ = writeln!(s, "{:<58} {:>7} {:>10.3}", "total", "", total / 1e6);
        s
    }

    /// Chrome trace (`chrome://tracing`, Perfetto) of the recorded dispatches.
    pub fn chrome_trace(&self) -> String {
        let evs: Vec<serde_json::Value> = self
            .trace
            .iter()
            .flatten()
            .map(|e| {
                serde_json::json!({"name": e.name, "ph": "X", "ts": e.ts_us, "dur": e.dur_us, "pid": 0, "tid": 0})
            })
            .collect();
        serde_json::json!({ "traceEvents": evs }).to_string()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
