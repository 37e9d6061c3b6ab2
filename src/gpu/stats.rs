//! Counters of what the host does for the GPU: dispatches and copies recorded, submits,
//! readbacks, bind groups built or reused, and the host time spent recording and encoding.
//! `dkp bench dip` reports them per step; they cost one relaxed atomic add each.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counters {
    dispatches: AtomicU64,
    copies: AtomicU64,
    submits: AtomicU64,
    readbacks: AtomicU64,
    bind_groups_created: AtomicU64,
    bind_groups_reused: AtomicU64,
    record_ns: AtomicU64,
    encode_ns: AtomicU64,
    submit_ns: AtomicU64,
    bind_ns: AtomicU64,
}

/// A snapshot of the counters; subtract two to get what happened in between.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct GpuStats {
    pub dispatches: u64,
    pub copies: u64,
    pub submits: u64,
    pub readbacks: u64,
    pub bind_groups_created: u64,
    pub bind_groups_reused: u64,
    /// Host nanoseconds inside `Context::dispatch` (checks, pipeline lookup, uniform arena).
    pub record_ns: u64,
    /// Host nanoseconds turning recorded commands into a command buffer (bind groups,
    /// passes, the uniform upload).
    pub encode_ns: u64,
    /// Host nanoseconds inside `Queue::submit` (on lavapipe without a submit thread this
    /// includes executing the work).
    pub submit_ns: u64,
    /// Host nanoseconds creating bind groups (part of `encode_ns`).
    pub bind_ns: u64,
}

impl GpuStats {
    pub fn since(&self, earlier: &GpuStats) -> GpuStats {
        GpuStats {
            dispatches: self.dispatches - earlier.dispatches,
            copies: self.copies - earlier.copies,
            submits: self.submits - earlier.submits,
            readbacks: self.readbacks - earlier.readbacks,
            bind_groups_created: self.bind_groups_created - earlier.bind_groups_created,
            bind_groups_reused: self.bind_groups_reused - earlier.bind_groups_reused,
            record_ns: self.record_ns - earlier.record_ns,
            encode_ns: self.encode_ns - earlier.encode_ns,
            submit_ns: self.submit_ns - earlier.submit_ns,
            bind_ns: self.bind_ns - earlier.bind_ns,
        }
    }
    /// Host microseconds per recorded dispatch (recording plus encoding).
    pub fn host_us_per_dispatch(&self) -> f64 {
        (self.record_ns + self.encode_ns) as f64 / 1e3 / self.dispatches.max(1) as f64
    }
}

pub(crate) enum Counter {
    Dispatch,
    Copy,
    Submit,
    Readback,
    BindGroupCreated,
    BindGroupReused,
    RecordNs,
    EncodeNs,
    SubmitNs,
    BindNs,
}

impl Counters {
    pub fn add(&self, c: Counter, n: u64) {
        let a = match c {
            Counter::Dispatch => &self.dispatches,
            Counter::Copy => &self.copies,
            Counter::Submit => &self.submits,
            Counter::Readback => &self.readbacks,
            Counter::BindGroupCreated => &self.bind_groups_created,
            Counter::BindGroupReused => &self.bind_groups_reused,
            Counter::RecordNs => &self.record_ns,
            Counter::EncodeNs => &self.encode_ns,
            Counter::SubmitNs => &self.submit_ns,
            Counter::BindNs => &self.bind_ns,
        };
        a.fetch_add(n, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> GpuStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GpuStats {
            dispatches: g(&self.dispatches),
            copies: g(&self.copies),
            submits: g(&self.submits),
            readbacks: g(&self.readbacks),
            bind_groups_created: g(&self.bind_groups_created),
            bind_groups_reused: g(&self.bind_groups_reused),
            record_ns: g(&self.record_ns),
            encode_ns: g(&self.encode_ns),
            submit_ns: g(&self.submit_ns),
            bind_ns: g(&self.bind_ns),
        }
    }
}
