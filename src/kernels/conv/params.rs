//! Parameter blocks: mirrors of the WGSL structs of `conv2d.wgsl`, `conv2d_tiled.wgsl` and
//! `conv2d_sg.wgsl` (field order and padding must match the shaders).

use super::*;

// ---- parameter blocks (mirrors of the WGSL structs) ----

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub(super) struct CoreParams {
    pub(super) nb: u32,
    pub(super) ng: u32,
    pub(super) g0: u32,
    pub(super) flags: u32,
    pub(super) lt: u32,
    pub(super) l0: u32,
    pub(super) nl: u32,
    pub(super) rt: u32,
    pub(super) r0: u32,
    pub(super) nr: u32,
    pub(super) ty: u32,
    pub(super) tx: u32,
    pub(super) hi: u32,
    pub(super) wi: u32,
    pub(super) ho: u32,
    pub(super) wo: u32,
    pub(super) si: u32,
    pub(super) so: u32,
    pub(super) oyoff: i32,
    pub(super) oxoff: i32,
    pub(super) hs: u32,
    pub(super) ws: u32,
    pub(super) wp_off: u32,
    pub(super) x_off: u32,
    pub(super) x_ns: u32,
    pub(super) x_c0: u32,
    pub(super) y_off: u32,
    pub(super) y_ns: u32,
    pub(super) y_c0: u32,
    pub(super) ntap: u32,
    pub(super) aux0: u32,
    pub(super) aux1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
pub(super) struct AuxParams {
    pub(super) n: u32,
    pub(super) h: u32,
    pub(super) w: u32,
    pub(super) hq: u32,
    pub(super) wq: u32,
    pub(super) top: u32,
    pub(super) left: u32,
    pub(super) mode: u32,
    pub(super) in_off: u32,
    pub(super) out_off: u32,
    pub(super) kh: u32,
    pub(super) kw: u32,
    pub(super) gg: u32,
    pub(super) rr: u32,
    pub(super) ll: u32,
    pub(super) tyy: u32,
    pub(super) txx: u32,
    pub(super) s: u32,
    pub(super) ry: u32,
    pub(super) rx: u32,
    pub(super) transposed: u32,
    pub(super) flags: u32,
    pub(super) nsum: u32,
    pub(super) stride: u32,
    /// `pack_w`: divisors by ll, txx, tyy, rr for the shader's `udiv` (an integer division
    /// by a runtime value is scalar code on a CPU adapter; `pack_w` needs four per element).
    pub(super) dv: [[u32; 4]; 4],
}
