//! Tensor = shape + dtype + pooled GPU storage (+ an id the autodiff tape refers to).
//! Tensors are immutable handles: ops create new tensors; optimizers update parameter storage
//! in place, which keeps a parameter's identity across steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::gpu::{BufRange, Context, GpuBuffer};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// `"f32"` / `"f16"`, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }
}

pub struct TensorInner {
    id: u64,
    shape: Vec<usize>,
    dtype: DType,
    storage: Arc<GpuBuffer>,
    /// Byte offset of element 0 in `storage` (non-zero for parameters packed into a shared
    /// buffer; always a multiple of the adapter's storage offset alignment).
    offset: u64,
    ctx: Arc<Context>,
    requires_grad: AtomicBool,
}

#[derive(Clone)]
pub struct Tensor {
    inner: Arc<TensorInner>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor#{}{:?}{:?}",
            self.id(),
            self.shape(),
            self.dtype()
        )
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Uninitialized tensor (contents are whatever the pooled buffer held).
    pub fn empty(ctx: &Arc<Context>, shape: &[usize]) -> Result<Tensor> {
        Self::empty_dtype(ctx, shape, DType::F32)
    }

    pub fn empty_dtype(ctx: &Arc<Context>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = (numel(shape) as u64 * dtype.size()).div_ceil(4) * 4;
        let storage = ctx.alloc("alloc", bytes)?;
        Ok(Self::from_parts(
            ctx,
            shape.to_vec(),
            dtype,
            Arc::new(storage),
            0,
        ))
    }

    /// A tensor of `shape` stored at byte `offset` of a buffer shared with other tensors.
    pub(crate) fn view(
        ctx: &Arc<Context>,
        storage: Arc<GpuBuffer>,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let bytes = (numel(shape) as u64 * dtype.size()).div_ceil(4) * 4;
        let align = ctx.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        if !offset.is_multiple_of(align) || offset + bytes > storage.capacity() {
            return Err(Error::Invalid(format!(
                "a {shape:?} view at byte {offset} of a {}-byte buffer (alignment {align})",
                storage.capacity()
            )));
        }
        Ok(Self::from_parts(
            ctx,
            shape.to_vec(),
            dtype,
            storage,
            offset,
        ))
    }

    fn from_parts(
        ctx: &Arc<Context>,
        shape: Vec<usize>,
        dtype: DType,
        storage: Arc<GpuBuffer>,
        offset: u64,
    ) -> Tensor {
        Tensor {
            inner: Arc::new(TensorInner {
                id: next_id(),
                shape,
                dtype,
                storage,
                offset,
                ctx: ctx.clone(),
                requires_grad: AtomicBool::new(false),
            }),
        }
    }

    pub fn from_slice(ctx: &Arc<Context>, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape {
                op: "from_slice",
                msg: format!("{} values for shape {:?}", data.len(), shape),
            });
        }
        let t = Self::empty(ctx, shape)?;
        ctx.upload(t.buffer(), t.offset(), bytemuck::cast_slice(data))?;
        Ok(t)
    }

    pub fn from_f16(ctx: &Arc<Context>, data: &[half::f16], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::Shape {
                op: "from_f16",
                msg: format!("{} values for shape {:?}", data.len(), shape),
            });
        }
        let t = Self::empty_dtype(ctx, shape, DType::F16)?;
        ctx.upload(t.buffer(), t.offset(), bytemuck::cast_slice(data))?;
        Ok(t)
    }

    pub fn zeros(ctx: &Arc<Context>, shape: &[usize]) -> Result<Tensor> {
        Self::full(ctx, shape, 0.0)
    }

    pub fn full(ctx: &Arc<Context>, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Self::empty(ctx, shape)?;
        crate::kernels::elementwise::fill(&t, value)?;
        Ok(t)
    }

    pub fn scalar(ctx: &Arc<Context>, value: f32) -> Result<Tensor> {
        Self::from_slice(ctx, &[value], &[1])
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }
    pub fn dims(&self) -> usize {
        self.inner.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }
    pub fn ctx(&self) -> &Arc<Context> {
        &self.inner.ctx
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.inner.storage.raw()
    }
    pub fn storage(&self) -> &Arc<GpuBuffer> {
        &self.inner.storage
    }
    /// Byte offset of the first element in [`Self::buffer`].
    pub fn offset(&self) -> u64 {
        self.inner.offset
    }
    /// Bytes this tensor's elements occupy (4-byte aligned).
    pub fn byte_len(&self) -> u64 {
        (self.numel() as u64 * self.dtype().size()).div_ceil(4) * 4
    }
    /// The whole tensor as a kernel binding.
    pub fn range(&self) -> BufRange {
        BufRange {
            buffer: self.buffer().clone(),
            offset: self.offset(),
            size: self.byte_len().max(4),
        }
    }
    /// `count` elements starting at element `start` (byte offset must meet the adapter's
    /// storage offset alignment; callers split on aligned boundaries).
    pub fn sub_range(&self, start: usize, count: usize) -> BufRange {
        let es = self.dtype().size();
        BufRange {
            buffer: self.buffer().clone(),
            offset: self.offset() + start as u64 * es,
            size: (count as u64 * es).div_ceil(4).max(1) * 4,
        }
    }

    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad.load(Ordering::Relaxed)
    }
    pub(crate) fn set_requires_grad(&self, v: bool) {
        self.inner.requires_grad.store(v, Ordering::Relaxed);
    }

    /// Mark as a trainable leaf (gradients are collected for it by `backward`).
    pub fn into_param(self) -> Tensor {
        self.set_requires_grad(true);
        self
    }

    /// Same storage, new identity, no gradient flows through (PyTorch `detach`).
    pub fn detach(&self) -> Tensor {
        Self::from_parts(
            self.ctx(),
            self.inner.shape.clone(),
            self.inner.dtype,
            self.inner.storage.clone(),
            self.inner.offset,
        )
    }

    /// Same storage viewed with another shape (contiguous row-major), differentiable.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::Shape {
                op: "reshape",
                msg: format!("{:?} -> {:?}", self.shape(), shape),
            });
        }
        let out = Self::from_parts(
            self.ctx(),
            shape.to_vec(),
            self.inner.dtype,
            self.inner.storage.clone(),
            self.inner.offset,
        );
        let old = self.shape().to_vec();
        crate::autograd::record("reshape", &[self], &out, move |g| {
            Ok(vec![Some(g.reshape(&old)?)])
        });
        Ok(out)
    }

    /// A fresh copy with its own storage (not recorded on the tape).
    pub fn copy(&self) -> Result<Tensor> {
        let t = Self::empty_dtype(self.ctx(), self.shape(), self.dtype())?;
        self.ctx().record_copy(
            self.buffer(),
            self.offset(),
            t.buffer(),
            0,
            self.byte_len().max(4),
        )?;
        Ok(t)
    }

    /// Overwrite this tensor's storage with `src` (same shape); used by optimizers and tests.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() || src.dtype() != self.dtype() {
            return Err(Error::Shape {
                op: "assign",
                msg: format!("{:?} <- {:?}", self.shape(), src.shape()),
            });
        }
        self.ctx().record_copy(
            src.buffer(),
            src.offset(),
            self.buffer(),
            self.offset(),
            self.byte_len().max(4),
        )
    }

    /// Overwrite with host data.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() || self.dtype() != DType::F32 {
            return Err(Error::Shape {
                op: "write",
                msg: format!("{} values into {:?}", data.len(), self.shape()),
            });
        }
        self.ctx()
            .upload(self.buffer(), self.offset(), bytemuck::cast_slice(data))
    }

    /// Read back to the host as f32 (f16 tensors are widened). Flushes pending work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self
            .ctx()
            .read_bytes(self.buffer(), self.offset(), self.byte_len().max(4))?;
        Ok(match self.dtype() {
            DType::F32 => bytemuck::cast_slice::<u8, f32>(&bytes)[..self.numel()].to_vec(),
            DType::F16 => bytemuck::cast_slice::<u8, half::f16>(&bytes)[..self.numel()]
                .iter()
                .map(|h| h.to_f32())
                .collect(),
        })
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::Shape {
                op: "item",
                msg: format!("tensor of shape {:?} is not a scalar", self.shape()),
            });
        }
        Ok(self.to_vec()?[0])
    }

    /// The dtype shared by `ts` (an op's activation operands), which must be one of
    /// `allowed`; otherwise `Error::Shape` naming the op and every operand's dtype. F16
    /// operands are inference-only: asking for a gradient through them is an error.
    pub(crate) fn common_dtype(
        op: &'static str,
        ts: &[&Tensor],
        allowed: &[DType],
    ) -> Result<DType> {
        let d = ts.first().map(|t| t.dtype()).unwrap_or(DType::F32);
        if ts.iter().any(|t| t.dtype() != d) || !allowed.contains(&d) {
            let list: Vec<String> = ts.iter().map(|t| format!("{:?}", t.dtype())).collect();
            return Err(Error::Shape {
                op,
                msg: format!(
                    "operand dtypes [{}] are mixed or unsupported (this op takes one of {:?} for all of them)",
                    list.join(", "),
                    allowed
                ),
            });
        }
        if d == DType::F16 && crate::autograd::needs_grad(ts) {
            return Err(Error::Unsupported {
                op,
                msg: "f16 tensors are inference-only: no gradient can be recorded through them \
                      (run under no_grad, or use f32)"
                    .into(),
            });
        }
        Ok(d)
    }

    pub(crate) fn expect_f32(&self, op: &'static str) -> Result<()> {
        if self.dtype() != DType::F32 {
            return Err(Error::Unsupported {
                op,
                msg: format!("dtype {:?} (this op takes f32)", self.dtype()),
            });
        }
        Ok(())
    }
}
