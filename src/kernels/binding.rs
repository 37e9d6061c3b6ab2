//! Storage-binding windows and chunking, shared by every launcher.
//!
//! A storage binding must start at a multiple of the adapter's
//! `min_storage_buffer_offset_alignment` and be at most `max_storage_buffer_binding_size`
//! long. Tensors larger than that are processed in pieces: a *window* binds a range that
//! starts at the aligned offset at or below the wanted element and passes the remaining
//! element offset to the shader; a *chunk* split picks piece sizes whose starts are aligned
//! themselves, so no offset is needed. One set of rules here, so every op agrees on them.

use crate::error::{Error, Result};
use crate::gpu::{BufRange, Context};
use crate::tensor::Tensor;

/// f32 elements per storage-offset alignment unit.
pub(crate) fn align_elems(ctx: &Context) -> usize {
    (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1)
}

/// Bind `count` elements of `t` starting at element `start`: the binding starts at the aligned
/// element at or before `start`; the returned offset locates `start` inside the binding.
pub(crate) fn window(t: &Tensor, start: usize, count: usize) -> (BufRange, u32) {
    let al = (t.ctx().limits.min_storage_buffer_offset_alignment as usize
        / t.dtype().size() as usize)
        .max(1);
    let a = start - start % al;
    (t.sub_range(a, count + (start - a)), (start - a) as u32)
}

/// Largest element count a window may cover, wherever it starts, so that it fits one binding
/// after alignment.
pub(crate) fn max_window_elems(ctx: &Context) -> usize {
    ((ctx.max_binding() / 4) as usize).saturating_sub(align_elems(ctx))
}

/// Largest piece size for [`chunks`] so that every piece (of f32 or f16 elements) fits one
/// binding and starts aligned: a multiple of the alignment counted in 2-byte elements, which
/// is aligned for 4-byte elements too.
pub(crate) fn chunk_elems(ctx: &Context) -> usize {
    let max = ctx.max_binding() / 4;
    let align = (ctx.limits.min_storage_buffer_offset_alignment as u64 / 2).max(64);
    ((max / align) * align).max(align) as usize
}

/// `(start, count)` pieces of at most `chunk` elements covering `0..n`.
pub(crate) fn chunks(n: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk)).map(move |c| {
        let s = c * chunk;
        (s, chunk.min(n - s))
    })
}

/// A run of whole planes `p0..p0+np` with each tensor's window over them.
pub(crate) struct PlaneChunk {
    pub p0: usize,
    pub np: usize,
    pub ranges: Vec<BufRange>,
    pub offs: Vec<u32>,
}

/// Split `nplanes` planes into chunks such that every tensor's share fits one storage binding.
/// `ts` lists each tensor with its plane length in elements (tensor i holds `nplanes * len_i`
/// elements). A single chunk binding whole tensors is returned when everything fits.
pub(crate) fn plane_chunks(
    op: &'static str,
    ts: &[(&Tensor, usize)],
    nplanes: usize,
) -> Result<Vec<PlaneChunk>> {
    let Some((t0, _)) = ts.first() else {
        return Ok(Vec::new());
    };
    let ctx = t0.ctx();
    let max = ctx.max_binding();
    if ts.iter().all(|(t, _)| t.byte_len().max(4) <= max) {
        return Ok(vec![PlaneChunk {
            p0: 0,
            np: nplanes,
            ranges: ts.iter().map(|(t, _)| t.range()).collect(),
            offs: vec![0; ts.len()],
        }]);
    }
    let align = (ctx.limits.min_storage_buffer_offset_alignment as u64).max(4);
    let per = ts
        .iter()
        .map(|(t, l)| (max.saturating_sub(align)) / (t.dtype().size() * (*l).max(1) as u64))
        .min()
        .unwrap_or(0) as usize;
    if per == 0 {
        let worst = ts.iter().map(|(_, l)| 4 * *l as u64).max().unwrap_or(0);
        return Err(Error::BindingTooLarge {
            op,
            bytes: worst,
            limit: max,
            detail: format!(
                "one plane is too large to bind; shapes {:?}",
                ts.iter()
                    .map(|(t, _)| t.shape().to_vec())
                    .collect::<Vec<_>>()
            ),
        });
    }
    let mut out = Vec::new();
    let mut p0 = 0;
    while p0 < nplanes {
        let np = per.min(nplanes - p0);
        let (ranges, offs) = ts.iter().map(|(t, l)| window(t, p0 * l, np * l)).unzip();
        out.push(PlaneChunk {
            p0,
            np,
            ranges,
            offs,
        });
        p0 += np;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_once() {
        let v: Vec<_> = chunks(10, 4).collect();
        assert_eq!(v, [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunks(0, 4).count(), 0);
        assert_eq!(chunks(3, 0).count(), 3);
    }
}
