//! The one object that owns everything GPU-side: device, queue, limits, features, buffer pool,
//! pipeline cache, command recorder, profiler, and a slot for the per-thread autodiff tapes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use wgpu::util::DeviceExt;

use super::pipelines::{KernelKey, PipelineCache};
use super::pool::{BufferPool, GpuBuffer, PoolStats};
use super::profiler::Profiler;
use super::recorder::{BufRange, Cmd, DispatchCmd, Recorder};
use super::stats::{Counter, Counters, GpuStats};
use crate::error::{Error, Result};

/// How to pick and open the adapter.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backend list as `WGPU_BACKEND` takes it (`vulkan`, `metal`, `dx12`, `gl`); env wins if unset.
    pub backend: Option<String>,
    /// Case-insensitive substring of the adapter name; `WGPU_ADAPTER_NAME` is used if unset.
    pub adapter: Option<String>,
    /// Per-dispatch timestamps (one pass per dispatch).
    pub profile: bool,
    /// Keep a chrome trace of profiled dispatches.
    pub trace: bool,
    /// Flush the recorder after this many dispatches (`DKP_MAX_TASKS`, default 256).
    pub max_tasks: Option<usize>,
    /// Exactly this adapter of [`enumerate`]'s list (wins over `adapter`): how workers on
    /// several adapters with the same name each get their own.
    pub adapter_index: Option<usize>,
}

/// What the rest of the program needs to know about the adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub software: bool,
    pub timestamp_query: bool,
    pub shader_f16: bool,
    pub subgroup: bool,
    /// Subgroup size range (lavapipe: 8..8).
    pub subgroup_sizes: (u32, u32),
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroups_per_dim: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_storage: u32,
}

impl AdapterSummary {
    pub fn from_adapter(info: &wgpu::AdapterInfo, f: wgpu::Features, l: &wgpu::Limits) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            software: info.device_type == wgpu::DeviceType::Cpu,
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
            max_storage_binding: l.max_storage_buffer_binding_size,
            max_buffer: l.max_buffer_size,
            max_workgroups_per_dim: l.max_compute_workgroups_per_dimension,
            max_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_workgroup_storage: l.max_compute_workgroup_storage_size,
        }
    }
}

/// Which tuning of a kernel to use: software rasterizer-style adapters reward register blocking
/// without workgroup memory; real GPUs reward shared-memory tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tuning {
    Software,
    Gpu,
}

pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub tuning: Tuning,
    pool: BufferPool,
    pipelines: PipelineCache,
    recorder: Mutex<Recorder>,
    profiler: Mutex<Option<Profiler>>,
    max_tasks: usize,
    error: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// The autodiff tapes (owned by `autograd`, which is above this layer: the slot only
    /// holds them so they live and die with the context).
    pub(crate) tapes: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    force_f32: AtomicBool,
    /// MAP_READ staging buffers for readback, reused by size class.
    staging: Mutex<std::collections::HashMap<u64, Vec<wgpu::Buffer>>>,
    counters: Counters,
    /// Per-context values higher layers build once (FFT plans), by kind and key.
    memo: Mutex<Memo>,
}

type Memo = std::collections::HashMap<(&'static str, usize), Arc<dyn std::any::Any + Send + Sync>>;

/// Which bind group a dispatch needs: the kernel (by its cache entry, which lives as long as
/// the context) and every storage range; the uniform block comes as a dynamic offset.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    kernel: usize,
    uniform_size: u64,
    ranges: Vec<(wgpu::Buffer, u64, u64)>,
}

pub(crate) type BindGroupCache = std::collections::HashMap<BindKey, wgpu::BindGroup>;

/// Bind groups kept at most (a DIP-DKP step at the paper size uses about a thousand).
const MAX_CACHED_BIND_GROUPS: usize = 16384;

/// List the adapters wgpu can see for the requested backends.
pub fn enumerate(backend: Option<&str>) -> Vec<wgpu::Adapter> {
    let instance = make_instance(backend);
    pollster::block_on(instance.enumerate_adapters(backends(backend)))
}

/// Backend names `--backend` accepts (wgpu's own spellings).
const BACKEND_NAMES: [&str; 9] = [
    "vulkan", "vk", "metal", "mtl", "dx12", "d3d12", "gl", "gles", "opengl",
];

/// Refuse an unknown backend name (wgpu would silently drop it and then find no adapter).
pub fn check_backend_list(list: &str) -> Result<()> {
    for b in list.split(',').map(str::trim) {
        if !BACKEND_NAMES.contains(&b.to_lowercase().as_str()) {
            return Err(Error::Invalid(format!(
                "--backend {list:?}: unknown backend {b:?}; use vulkan, metal, dx12 or gl (a comma list)"
            )));
        }
    }
    Ok(())
}

fn backends(backend: Option<&str>) -> wgpu::Backends {
    match backend {
        Some(b) => wgpu::Backends::from_comma_list(b),
        None => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
    }
}

fn make_instance(backend: Option<&str>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends(backend);
    wgpu::Instance::new(desc)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Context {
    pub fn new(opts: &ContextOptions) -> Result<Arc<Self>> {
        let backend = opts.backend.clone();
        if let Some(b) = &backend {
            check_backend_list(b)?;
        }
        let max_tasks = match opts.max_tasks {
            Some(n) => n.max(1),
            None => match std::env::var("DKP_MAX_TASKS") {
                Ok(v) => v.trim().parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    Error::Invalid(format!(
                        "DKP_MAX_TASKS={v:?}: expected a whole number >= 1 (dispatches per submit; default 256)"
                    ))
                })?,
                Err(_) => 256,
            },
        };
        let adapters = enumerate(backend.as_deref());
        let wanted = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let index = opts.adapter_index;
        let mut cands: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .enumerate()
            .filter(|(i, _)| index.is_none_or(|k| k == *i))
            .map(|(_, a)| a)
            .filter(|a| {
                index.is_some()
                    || wanted.as_ref().is_none_or(|w| {
                        a.get_info().name.to_lowercase().contains(&w.to_lowercase())
                    })
            })
            .collect();
        cands.sort_by_key(|a| type_rank(a.get_info().device_type));
        let adapter = cands.into_iter().next().ok_or_else(|| {
            let hint = match (&wanted, names.is_empty()) {
                (_, true) => ": install a Vulkan driver (on a machine without a GPU: Mesa's lavapipe, package mesa-vulkan-drivers) or pick another --backend".to_string(),
                (Some(w), false) => format!(" matching `{w}`; available: {}", names.join(", ")),
                (None, false) => String::new(),
            };
            Error::NoAdapter(hint)
        })?;
        let info = adapter.get_info();
        let wanted_features =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted_features;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("dkp"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: Default::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: Default::default(),
        }))
        .map_err(|e| Error::Device(e.to_string()))?;

        // Errors outside an error scope must never abort the process: keep the first one and
        // surface it as an Err at the next flush.
        let error = Arc::new(Mutex::new(None::<String>));
        let e2 = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut g) = e2.lock() {
                g.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = l2.lock() {
                *g = Some(format!("{reason:?}: {msg}"));
            }
        });

        let summary = AdapterSummary::from_adapter(&info, features, &limits);
        log::info!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        if summary.software {
            log::warn!(
                "`{}` is a software (CPU) adapter: everything works but runs far slower than on a GPU",
                info.name
            );
        }
        let tuning = if summary.software {
            Tuning::Software
        } else {
            Tuning::Gpu
        };
        let profiler = opts
            .profile
            .then(|| Profiler::new(summary.timestamp_query, opts.trace));
        let align = limits.min_uniform_buffer_offset_alignment as u64;
        Ok(Arc::new(Self {
            device,
            queue,
            summary,
            limits,
            features,
            tuning,
            pool: BufferPool::new(),
            pipelines: PipelineCache::new()?,
            recorder: Mutex::new(Recorder::new(align)),
            profiler: Mutex::new(profiler),
            max_tasks,
            error,
            lost,
            tapes: std::sync::OnceLock::new(),
            force_f32: AtomicBool::new(false),
            staging: Mutex::new(std::collections::HashMap::new()),
            counters: Counters::default(),
            memo: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    pub fn is_software(&self) -> bool {
        self.summary.software
    }
    pub fn has_f16(&self) -> bool {
        self.summary.shader_f16 && !self.force_f32.load(Ordering::Relaxed)
    }
    pub fn set_force_f32(&self, v: bool) {
        self.force_f32.store(v, Ordering::Relaxed);
    }
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }
    pub fn memory(&self) -> PoolStats {
        self.pool.stats()
    }
    /// Bytes a run may use on this adapter, when that can be known: `DKP_MEMORY_BUDGET`
    /// (bytes, or with a K/M/G suffix) if set, else on a software adapter (whose buffers live
    /// in host memory) the host's available memory. wgpu does not report a GPU's memory size,
    /// so on real GPUs without the variable this is `None` and only the estimate is shown.
    pub fn memory_budget(&self) -> Result<Option<u64>> {
        if let Ok(v) = std::env::var("DKP_MEMORY_BUDGET") {
            return parse_bytes(&v).map(Some).ok_or_else(|| {
                Error::Invalid(format!(
                    "DKP_MEMORY_BUDGET={v:?} is not a size (bytes, or a number with K, M or G)"
                ))
            });
        }
        Ok(if self.is_software() {
            host_available_memory()
        } else {
            None
        })
    }
    /// Free the pool's idle buffers. Recorded work may still reference a buffer whose tensor
    /// was dropped, so everything pending is submitted and waited for first.
    pub fn trim_pool(&self) -> Result<()> {
        self.flush()?;
        self.wait()?;
        self.rec().bind_groups.clear();
        self.pool.trim();
        Ok(())
    }
    /// What the host has done for the GPU so far (see [`GpuStats`]).
    pub fn stats(&self) -> GpuStats {
        self.counters.snapshot()
    }
    /// The value stored under (`kind`, `key`) on this context, built by `build` on first use
    /// (outside the lock, so a build may ask for other values). Lives as long as the context;
    /// what it holds must not hold the context (no cycle).
    pub fn memo<T: std::any::Any + Send + Sync>(
        &self,
        kind: &'static str,
        key: usize,
        build: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        let get = |m: &Memo| {
            m.get(&(kind, key)).cloned().map(|v| {
                v.downcast::<T>()
                    .map_err(|_| Error::Invalid(format!("memo `{kind}` holds another type")))
            })
        };
        if let Some(v) = get(&self.memo.lock().unwrap_or_else(|p| p.into_inner())) {
            return v;
        }
        let built: Arc<dyn std::any::Any + Send + Sync> = Arc::new(build()?);
        let mut m = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((kind, key)).or_insert(built);
        get(&m).expect("just inserted")
    }
    /// Whether shaders are compiled with wgpu's runtime checks (`DKP_SHADER_CHECKS`).
    pub fn shader_checks(&self) -> bool {
        self.pipelines.checks()
    }
    pub fn pipelines_cached(&self) -> usize {
        self.pipelines.len()
    }

    /// A pooled buffer for `bytes` bytes (uninitialized contents).
    pub fn alloc(&self, op: &'static str, bytes: u64) -> Result<GpuBuffer> {
        let bytes = bytes.max(4);
        if bytes > self.limits.max_buffer_size {
            return Err(Error::BindingTooLarge {
                op,
                bytes,
                limit: self.limits.max_buffer_size,
                detail: "larger than the adapter's max buffer size".into(),
            });
        }
        Ok(self
            .pool
            .get(&self.device, bytes, self.limits.max_buffer_size))
    }

    /// Copy host data into `dst` at `offset`, ordered with the recorded commands (a staging
    /// buffer + a recorded copy, so a recycled buffer is never overwritten early).
    pub fn upload(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut padded;
        let bytes = if !data.len().is_multiple_of(4) {
            padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            &padded[..]
        } else {
            data
        };
        let staging = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("dkp-upload"),
                contents: bytes,
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        self.record_copy(&staging, 0, dst, offset, bytes.len() as u64)
    }

    pub fn record_copy(
        &self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) -> Result<()> {
        self.counters.add(Counter::Copy, 1);
        let mut rec = self.rec();
        rec.cmds.push(Cmd::Copy {
            src: src.clone(),
            src_offset,
            dst: dst.clone(),
            dst_offset,
            size,
        });
        Ok(())
    }

    /// Fold a workgroup count into a grid within the per-dimension limit. Kernels rebuild the
    /// linear workgroup index as `wid.x + wid.y * nwg.x` (+ `wid.z * nwg.x * nwg.y`).
    pub fn grid(&self, op: &'static str, groups: u64) -> Result<[u32; 3]> {
        let lim = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let groups = groups.max(1);
        if groups <= lim {
            return Ok([groups as u32, 1, 1]);
        }
        let y = groups.div_ceil(lim);
        if y <= lim {
            let x = groups.div_ceil(y);
            return Ok([x as u32, y as u32, 1]);
        }
        let z = y.div_ceil(lim);
        if z <= lim {
            let yz = groups.div_ceil(lim);
            let y = yz.div_ceil(z);
            return Ok([lim as u32, y as u32, z as u32]);
        }
        Err(Error::DispatchTooLarge {
            op,
            groups,
            limit: lim as u32,
        })
    }

    /// Record one dispatch. `bindings[i]` is bound at `@binding(i+1)`; `@binding(0)` is the
    /// uniform block `params`. `flops`/`bytes` feed the profiler's GFLOP/s and GB/s columns.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &self,
        op: &'static str,
        key: &KernelKey,
        params: &[u8],
        bindings: &[BufRange],
        groups: [u32; 3],
        flops: f64,
        bytes: f64,
    ) -> Result<()> {
        let t0 = Instant::now();
        let max = self.max_binding();
        for b in bindings {
            if b.size > max {
                return Err(Error::BindingTooLarge {
                    op,
                    bytes: b.size,
                    limit: max,
                    detail: format!("kernel {}", key.label()),
                });
            }
        }
        let lim = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > lim) {
            return Err(Error::DispatchTooLarge {
                op,
                groups: groups.iter().map(|&g| g as u64).product(),
                limit: lim,
            });
        }
        let kernel = self.pipelines.get(&self.device, key)?;
        let flush = {
            let mut rec = self.rec();
            let (uniform_offset, uniform_size) = rec.push_uniform(params);
            rec.cmds.push(Cmd::Dispatch(DispatchCmd {
                kernel,
                uniform_offset,
                uniform_size,
                bindings: bindings.to_vec(),
                groups,
                flops,
                bytes,
            }));
            rec.dispatches += 1;
            rec.dispatches >= self.max_tasks
        };
        self.counters.add(Counter::Dispatch, 1);
        self.counters
            .add(Counter::RecordNs, t0.elapsed().as_nanos() as u64);
        if flush {
            self.flush()?;
        }
        Ok(())
    }

    fn rec(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_errors(&self) -> Result<()> {
        if let Some(m) = self.lost.lock().ok().and_then(|g| g.clone()) {
            return Err(Error::DeviceLost(m));
        }
        if let Some(m) = self.error.lock().ok().and_then(|mut g| g.take()) {
            return Err(Error::Gpu(m));
        }
        Ok(())
    }

    /// Submit everything recorded so far as one command buffer.
    pub fn flush(&self) -> Result<()> {
        let mut rec = self.rec();
        if rec.cmds.is_empty() {
            drop(rec);
            return self.check_errors();
        }
        let t_encode = Instant::now();
        let cmds = std::mem::take(&mut rec.cmds);
        let arena = std::mem::take(&mut rec.arena);
        rec.dispatches = 0;
        // Uniform arena for this batch.
        let need = (arena.len() as u64).max(256);
        let ubuf = match &rec.uniform_buf {
            Some(b) if b.size() >= need => b.clone(),
            _ => {
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dkp-uniform-arena"),
                    size: need.next_power_of_two(),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                rec.uniform_buf = Some(b.clone());
                // Cached bind groups name the old arena: they can never match again.
                rec.bind_groups.clear();
                b
            }
        };
        // The recorder stays locked until the submit: another thread's flush must not rewrite
        // the shared uniform arena before this batch is queued.
        if !arena.is_empty() {
            self.queue.write_buffer(&ubuf, 0, &arena);
        }

        let mut prof = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        let timed = prof.as_ref().is_some_and(|p| p.timestamps);
        let n_disp = cmds
            .iter()
            .filter(|c| matches!(c, Cmd::Dispatch(_)))
            .count() as u32;
        let query = (timed && n_disp > 0).then(|| {
            let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dkp-timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * n_disp,
            });
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dkp-ts-resolve"),
                size: 16 * n_disp as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dkp-ts-read"),
                size: 16 * n_disp as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (qs, resolve, read)
        });

        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("dkp") });
        let mut labels: Vec<(Arc<str>, f64, f64)> = Vec::new();
        let mut i = 0;
        while i < cmds.len() {
            match &cmds[i] {
                Cmd::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, Some(*size));
                    i += 1;
                }
                Cmd::Dispatch(_) => {
                    // One pass for the run of dispatches (or one per dispatch when timed).
                    let mut j = i;
                    while j < cmds.len() && matches!(cmds[j], Cmd::Dispatch(_)) {
                        j += 1;
                    }
                    if let Some((qs, _, _)) = &query {
                        for c in &cmds[i..j] {
                            let Cmd::Dispatch(d) = c else { unreachable!() };
                            let q = labels.len() as u32;
                            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: Some(&d.kernel.label),
                                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                    query_set: qs,
                                    beginning_of_pass_write_index: Some(2 * q),
                                    end_of_pass_write_index: Some(2 * q + 1),
                                }),
                            });
                            self.encode_dispatch(&mut pass, d, &ubuf, &mut rec.bind_groups);
                            labels.push((d.kernel.label.clone(), d.flops, d.bytes));
                        }
                    } else {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("dkp-batch"),
                            timestamp_writes: None,
                        });
                        for c in &cmds[i..j] {
                            let Cmd::Dispatch(d) = c else { unreachable!() };
                            self.encode_dispatch(&mut pass, d, &ubuf, &mut rec.bind_groups);
                            if prof.is_some() {
                                labels.push((d.kernel.label.clone(), d.flops, d.bytes));
                            }
                        }
                    }
                    i = j;
                }
            }
        }
        if let Some((qs, resolve, read)) = &query {
            enc.resolve_query_set(qs, 0..2 * n_disp, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, Some(16 * n_disp as u64));
        }
        let cb = enc.finish();
        let t0 = Instant::now();
        self.counters
            .add(Counter::EncodeNs, (t0 - t_encode).as_nanos() as u64);
        self.queue.submit([cb]);
        self.counters.add(Counter::Submit, 1);
        // A software adapter without a submit thread executes the work inside the submit.
        self.counters
            .add(Counter::SubmitNs, t0.elapsed().as_nanos() as u64);
        if let Some(p) = prof.as_mut() {
            // Profiling mode waits for each batch so timings belong to it.
            self.wait()?;
            let wall = t0.elapsed().as_nanos() as f64;
            p.wall_ns += wall;
            if let Some((_, _, read)) = &query {
                let ts = self.map_read(read, 0, 16 * n_disp as u64)?;
                let ts: &[u64] = bytemuck::cast_slice(&ts);
                let period = self.queue.get_timestamp_period() as f64;
                for (k, (label, fl, by)) in labels.iter().enumerate() {
                    let (a, b) = (ts[2 * k], ts[2 * k + 1]);
                    let ns = if b >= a {
                        (b - a) as f64 * period
                    } else {
                        -1.0
                    };
                    p.record(label, ns, *fl, *by);
                }
            } else {
                // No timestamps: attribute the batch's wall time evenly (documented as such).
                let n = labels.len().max(1) as f64;
                for (label, fl, by) in &labels {
                    p.record(label, wall / n, *fl, *by);
                }
            }
        }
        drop(prof);
        drop(rec);
        self.check_errors()
    }

    /// Bind and dispatch `d`. Bind groups are cached per (kernel, buffer ranges): the
    /// uniform block is bound with a dynamic offset, so a kernel that runs again on the same
    /// tensors (every training step) reuses the bind group built the first time.
    // A buffer hashes and compares by its id, which its interior state never changes.
    #[allow(clippy::mutable_key_type)]
    fn encode_dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        d: &DispatchCmd,
        ubuf: &wgpu::Buffer,
        cache: &mut BindGroupCache,
    ) {
        let key = BindKey {
            kernel: Arc::as_ptr(&d.kernel) as usize,
            uniform_size: d.uniform_size,
            ranges: d
                .bindings
                .iter()
                .map(|b| (b.buffer.clone(), b.offset, b.size))
                .collect(),
        };
        let bg = match cache.get(&key) {
            Some(bg) => {
                self.counters.add(Counter::BindGroupReused, 1);
                bg.clone()
            }
            None => {
                let mut entries = Vec::with_capacity(d.bindings.len() + 1);
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: ubuf,
                        offset: 0,
                        size: std::num::NonZeroU64::new(d.uniform_size),
                    }),
                });
                for (k, b) in d.bindings.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: k as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &b.buffer,
                            offset: b.offset,
                            size: std::num::NonZeroU64::new(b.size.max(4)),
                        }),
                    });
                }
                let tb = Instant::now();
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &d.kernel.layout,
                    entries: &entries,
                });
                self.counters.add(Counter::BindGroupCreated, 1);
                self.counters
                    .add(Counter::BindNs, tb.elapsed().as_nanos() as u64);
                if cache.len() >= MAX_CACHED_BIND_GROUPS {
                    // A bind group keeps its buffers alive: bound the cache rather than
                    // track every buffer's lifetime.
                    cache.clear();
                }
                cache.insert(key, bg.clone());
                bg
            }
        };
        pass.set_pipeline(&d.kernel.pipeline);
        pass.set_bind_group(0, &bg, &[d.uniform_offset as u32]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }

    /// Block until the GPU has finished everything submitted.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        self.check_errors()
    }

    /// Flush, then copy `size` bytes of `src` at `offset` to the host (through a pooled
    /// staging buffer).
    pub fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let size4 = size.div_ceil(4).max(1) * 4;
        let class = super::pool::size_class(size4);
        let reused = self
            .staging
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(&class).and_then(|v| v.pop()));
        let staging = match reused {
            Some(b) => b,
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dkp-readback"),
                size: class,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        self.counters.add(Counter::Readback, 1);
        self.record_copy(src, offset, &staging, 0, size4)?;
        self.flush()?;
        let mut v = self.map_read(&staging, 0, size4)?;
        v.truncate(size as usize);
        if let Ok(mut m) = self.staging.lock() {
            m.entry(class).or_default().push(staging);
        }
        Ok(v)
    }

    fn map_read(&self, buf: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        buf.map_async(wgpu::MapMode::Read, offset..offset + size, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| Error::Readback(e.to_string()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        let out = {
            let view = buf
                .get_mapped_range(offset..offset + size)
                .map_err(|e| Error::Readback(e.to_string()))?;
            view.to_vec()
        };
        buf.unmap();
        Ok(out)
    }

    // ---- profiler ----
    pub fn profiling(&self) -> bool {
        self.profiler.lock().map(|p| p.is_some()).unwrap_or(false)
    }
    pub fn enable_profiler(&self, trace: bool) {
        let mut p = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        *p = Some(Profiler::new(self.summary.timestamp_query, trace));
    }
    pub fn with_profiler<R>(&self, f: impl FnOnce(&mut Profiler) -> R) -> Option<R> {
        let mut p = self.profiler.lock().unwrap_or_else(|p| p.into_inner());
        p.as_mut().map(f)
    }
}

/// A cache of contexts for tests: one per process, built on first use.
pub fn shared_test_context() -> Option<Arc<Context>> {
    static CTX: std::sync::OnceLock<Option<Arc<Context>>> = std::sync::OnceLock::new();
    CTX.get_or_init(|| match Context::new(&ContextOptions::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("no wgpu adapter for tests: {e}");
            None
        }
    })
    .clone()
}

/// `1234`, `512M`, `8G`, `1.5G` (binary units) as bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mul as f64) as u64)
}

/// The host's available memory (Linux `MemAvailable`), when it can be read.
pub fn host_available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}
