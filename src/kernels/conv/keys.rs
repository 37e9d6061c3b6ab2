//! Which pipeline a conv launch builds: the specializations (workgroup sizes, register tiles,
//! generated subgroup kernels) and every key shipped, for naga validation.

use super::sg_tables::*;
use super::*;

// ---- specializations ----

/// conv_lo: lanes over lane channels, PX pixels per invocation.
pub(super) const LO_WG: u32 = 8;
pub(super) const LO_PX: u32 = 16;
/// conv_lp: lanes over pixels, OT lane channels per invocation.
pub(super) const LP_WG: u32 = 64;
/// wgrad_lo: lanes over output channels.
pub(super) const WLO_WG: u32 = 8;

pub(super) fn key_lo() -> KernelKey {
    KernelKey::new(&SHADER, "conv_lo")
        .u32("WG", LO_WG)
        .u32("PX", LO_PX)
}
pub(super) fn key_lp(ot: u32) -> KernelKey {
    KernelKey::new(&SHADER, "conv_lp")
        .u32("WG", LP_WG)
        .u32("OT", ot)
}
pub(super) fn key_wlo(ct: u32, tt: u32) -> KernelKey {
    KernelKey::new(&SHADER, "wgrad_lo")
        .u32("WG", WLO_WG)
        .u32("CT", ct)
        .u32("TT", tt)
}
pub(super) fn key_aux(entry: &'static str) -> KernelKey {
    KernelKey::new(&SHADER, entry)
}
/// `pad` / `pack_w` reading an f16 source (widened to f32 on load).
pub(super) fn key_aux_src(entry: &'static str, src: &Tensor) -> KernelKey {
    if src.dtype() == DType::F16 && (entry == "pad" || entry == "pack_w") {
        key_aux(entry).half(&["PI"])
    } else {
        key_aux(entry)
    }
}

/// (CT, TT) register tile of `wgrad_lo` for a kernel with `ntap` taps.
pub(super) fn wlo_tile(ntap: usize) -> (u32, u32) {
    match ntap {
        1 => (16, 1),
        4 => (4, 4),
        9 => (2, 9),
        _ => (1, 16),
    }
}

/// Output-channel tile of `conv_lp`.
pub(super) fn lp_ot(nl: usize) -> u32 {
    match nl {
        1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => 8,
    }
}

// tiled (GPU) kernels
pub(super) const T_BM: u32 = 64;
pub(super) const T_BN: u32 = 64;
pub(super) const T_BK: u32 = 16;

pub(super) fn key_tiled(entry: &'static str) -> KernelKey {
    KernelKey::new(&TILED, entry)
        .u32("BM", T_BM)
        .u32("BN", T_BN)
        .u32("BK", T_BK)
}

// Unrolled subgroup kernels of `shaders/conv2d_sg.wgsl`; their tile tables come from the same
// generator (`sg_tables.rs`).

pub(super) fn key_sg(entry: &'static str, nl: usize) -> KernelKey {
    KernelKey::new(&SG, entry).u32("WG", sg_wg(nl))
}

/// Workgroup size of the subgroup kernels: one subgroup when few lane channels.
pub(super) fn sg_wg(nl: usize) -> u32 {
    if nl <= 8 { 8 } else { SG_WG_MAX }
}

/// Whether the subgroup kernels can run: software tuning on an adapter whose subgroups have
/// at least 8 invocations.
pub(super) fn sg_ok(t: &Tensor, imp: ConvKernel) -> bool {
    let s = &t.ctx().summary;
    imp == ConvKernel::Software && s.subgroup && s.subgroup_sizes.0 >= 8
}

pub(super) fn sg_core(ty: usize, tx: usize, si: usize) -> Option<(&'static str, usize, usize)> {
    SG_CORE
        .iter()
        .find(|e| e.0 == (ty, tx, si))
        .map(|e| (e.1, e.2, e.3))
}

pub(super) fn sg_wgrad(kh: usize, kw: usize, si: usize) -> Option<(&'static str, usize)> {
    SG_WGRAD
        .iter()
        .find(|e| e.0 == (kh, kw, si))
        .map(|e| (e.1, e.2))
}

/// Every specialization this module can dispatch (for the naga validation test).
pub fn shipped_keys() -> Vec<KernelKey> {
    let mut v = vec![key_lo()];
    for ot in [1, 2, 4, 8] {
        v.push(key_lp(ot));
    }
    for nt in [1, 4, 9, 25] {
        let (ct, tt) = wlo_tile(nt);
        v.push(key_wlo(ct, tt));
    }
    for e in ["wgrad_gen", "pad", "fold", "pack_w", "pack_w2", "reduce"] {
        v.push(key_aux(e));
    }
    v.push(key_aux("pad").half(&["PI"]));
    v.push(key_aux("pack_w").half(&["PI"]));
    // core correlations writing f16 outputs
    v.push(key_lo().half(&["Y"]));
    for ot in [1, 2, 4, 8] {
        v.push(key_lp(ot).half(&["Y"]));
    }
    // ... and reading f16 weights packed once at load (PackedConvWeight), with f16 or f32
    // outputs
    for aliases in [&["Y"][..], &["W"][..], &["Y", "W"][..]] {
        v.push(key_tiled("conv_tiled").half(aliases));
        for e in SG_CORE.iter().map(|e| e.1) {
            v.push(key_sg(e, 8).half(aliases));
            v.push(key_sg(e, 32).half(aliases));
        }
        if aliases != ["Y"] {
            v.push(key_lo().half(aliases));
            for ot in [1, 2, 4, 8] {
                v.push(key_lp(ot).half(aliases));
            }
        }
    }
    v.push(key_tiled("conv_tiled"));
    v.push(key_tiled("wgrad_tiled"));
    for e in SG_CORE
        .iter()
        .map(|e| e.1)
        .chain(SG_WGRAD.iter().map(|e| e.1))
    {
        v.push(key_sg(e, 8));
        v.push(key_sg(e, 32));
    }
    v
}
