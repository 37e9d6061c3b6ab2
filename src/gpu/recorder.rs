//! Command recorder: launchers append dispatches and copies here; `flush` turns a whole batch
//! into one command buffer (one compute pass per run of dispatches, or one pass per dispatch
//! while profiling) and one submit. Uniform parameters of the batch live in one arena buffer.

use std::sync::Arc;

use super::pipelines::Compiled;

/// A storage-buffer range bound to a kernel.
#[derive(Clone, Debug)]
pub struct BufRange {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

pub(crate) struct DispatchCmd {
    pub kernel: Arc<Compiled>,
    pub uniform_offset: u64,
    pub uniform_size: u64,
    pub bindings: Vec<BufRange>,
    pub groups: [u32; 3],
    pub flops: f64,
    pub bytes: f64,
}

pub(crate) enum Cmd {
    Dispatch(DispatchCmd),
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

pub(crate) struct Recorder {
    pub cmds: Vec<Cmd>,
    pub arena: Vec<u8>,
    pub align: u64,
    pub dispatches: usize,
    pub uniform_buf: Option<wgpu::Buffer>,
    pub bind_groups: super::context::BindGroupCache,
}

impl Recorder {
    pub fn new(align: u64) -> Self {
        Self {
            cmds: Vec::new(),
            arena: Vec::new(),
            align: align.max(16),
            dispatches: 0,
            uniform_buf: None,
            bind_groups: Default::default(),
        }
    }

    /// Append a parameter block to the arena; returns (offset, padded size).
    pub fn push_uniform(&mut self, bytes: &[u8]) -> (u64, u64) {
        let off = (self.arena.len() as u64).div_ceil(self.align) * self.align;
        self.arena.resize(off as usize, 0);
        self.arena.extend_from_slice(bytes);
        // WGSL uniform structs are sized in multiples of 16 bytes.
        let size = (bytes.len() as u64).max(16).div_ceil(16) * 16;
        self.arena.resize((off + size) as usize, 0);
        (off, size)
    }
}
