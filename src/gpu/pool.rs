//! Buffer pool: storage buffers are recycled by size class so a training loop that allocates the
//! same shapes every step reaches a steady state and never grows.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Usage shared by every pooled tensor buffer: kernels read/write them, copies move data in/out.
pub const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Round a byte size up to a class: 4 classes per power of two above 4 KiB, so waste stays
/// under 25 % while steady-state loops still hit the same classes.
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    if bytes <= 4096 {
        return bytes.next_power_of_two();
    }
    let p = 63 - bytes.leading_zeros() as u64; // floor(log2)
    let base = 1u64 << p;
    let step = base / 4;
    bytes.div_ceil(step) * step
}

#[derive(Default, Debug, Clone, Copy)]
pub struct PoolStats {
    /// Bytes of all buffers the pool ever created and still owns (in use + free).
    pub allocated: u64,
    /// Bytes currently handed out to live tensors.
    pub in_use: u64,
    /// Highest `in_use` seen.
    pub peak_in_use: u64,
    /// Number of buffers created (a growing number in a steady loop means a leak).
    pub created: u64,
}

/// Idle buffers of one size class by creation serial. Handing out the oldest idle buffer
/// (not the last freed) makes a training step that repeats the same allocations get the
/// same buffers each time, so its bind groups are reused instead of rebuilt.
type FreeList = BTreeMap<u64, wgpu::Buffer>;

pub(crate) struct PoolInner {
    free: Mutex<HashMap<u64, FreeList>>,
    stats: Mutex<PoolStats>,
}

/// A storage buffer on loan from the pool; it goes back when the last handle drops.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    class: u64,
    serial: u64,
    pool: Arc<PoolInner>,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Ok(mut st) = self.pool.stats.lock() {
            st.in_use = st.in_use.saturating_sub(self.class);
        }
        if let Ok(mut free) = self.pool.free.lock() {
            free.entry(self.class)
                .or_default()
                .insert(self.serial, self.buffer.clone());
        }
    }
}

#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(PoolInner {
                free: Mutex::new(HashMap::new()),
                stats: Mutex::new(PoolStats::default()),
            }),
        }
    }

    /// Take a buffer of at least `bytes` bytes. `max_buffer` caps the class (the request itself
    /// must already fit, which the caller checked).
    pub fn get(&self, device: &wgpu::Device, bytes: u64, max_buffer: u64) -> GpuBuffer {
        let class = size_class(bytes).min(max_buffer.max(bytes)).div_ceil(4) * 4;
        let reused = self
            .inner
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(&class).and_then(|v| v.pop_first()));
        let mut st = self.inner.stats.lock().expect("pool stats poisoned");
        let (serial, buffer) = match reused {
            Some(b) => b,
            None => {
                st.allocated += class;
                st.created += 1;
                let b = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dkp-tensor"),
                    size: class,
                    usage: TENSOR_USAGE,
                    mapped_at_creation: false,
                });
                (st.created, b)
            }
        };
        st.in_use += class;
        st.peak_in_use = st.peak_in_use.max(st.in_use);
        GpuBuffer {
            buffer,
            class,
            serial,
            pool: self.inner.clone(),
        }
    }

    pub fn stats(&self) -> PoolStats {
        *self.inner.stats.lock().expect("pool stats poisoned")
    }

    /// Free every idle buffer (e.g. between images of a batch run).
    pub fn trim(&self) {
        let mut free = self.inner.free.lock().expect("pool poisoned");
        let mut st = self.inner.stats.lock().expect("pool stats poisoned");
        for (class, v) in free.drain() {
            st.allocated = st.allocated.saturating_sub(class * v.len() as u64);
            for b in v.into_values() {
                b.destroy();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;
    #[test]
    fn classes_are_monotone_and_cover() {
        let mut prev = 0;
        for b in (1..200_000u64).step_by(37) {
            let c = size_class(b);
            assert!(c >= b, "{b} -> {c}");
            assert!(c >= prev);
            assert!(c as f64 <= (b.max(256) as f64) * 1.25 + 4096.0);
            prev = c;
        }
    }
}
