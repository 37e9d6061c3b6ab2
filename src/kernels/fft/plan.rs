//! FFT plans: factorization into Stockham radix stages or a Bluestein chirp-z transform,
//! with twiddles and chirps computed in f64 on the CPU and uploaded once per (context, length).

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Stage {
    pub(super) r: u32,
    pub(super) ns: u32,
    pub(super) tw_off: u32,
    pub(super) roots_off: u32,
}

pub(super) enum PlanKind {
    Identity,
    Stockham(Vec<Stage>),
    Bluestein {
        m: usize,
        sub: Arc<Plan>,
        w_off: u32,
        bf_off: u32,
    },
}

/// A 1-D transform of one length: its algorithm and its constant table on the GPU.
pub struct Plan {
    pub(super) n: usize,
    pub(super) kind: PlanKind,
    pub(super) table: Option<wgpu::Buffer>,
}

impl Plan {
    /// Human-readable description (`"480 = 8·4·3·5"`, `"321: Bluestein over 672"`).
    pub fn describe(&self) -> String {
        match &self.kind {
            PlanKind::Identity => format!("{}: identity", self.n),
            PlanKind::Stockham(st) => format!(
                "{} = {}",
                self.n,
                st.iter()
                    .map(|s| s.r.to_string())
                    .collect::<Vec<_>>()
                    .join("·")
            ),
            PlanKind::Bluestein { m, .. } => format!("{}: Bluestein over {m}", self.n),
        }
    }
    pub(super) fn table(&self) -> BufRange {
        let t = self.table.as_ref().expect("plan without table");
        BufRange {
            buffer: t.clone(),
            offset: 0,
            size: t.size(),
        }
    }
}

/// Radices of a Stockham factorization of n, or None when n has a prime factor above 13.
pub fn factorize(n: usize) -> Option<Vec<u32>> {
    let mut rest = n;
    let mut out = Vec::new();
    for &r in &RADICES {
        while rest.is_multiple_of(r as usize) {
            out.push(r);
            rest /= r as usize;
        }
    }
    (rest == 1).then_some(out)
}

/// Forward DFT in f64 of any length: recursive mixed radix on the smallest prime factor
/// (direct sums for prime lengths). Only used to build plan tables.
pub(super) fn dft_f64(re: &[f64], im: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = re.len();
    if n <= 1 {
        return (re.to_vec(), im.to_vec());
    }
    let p = (2..=n).find(|p| n.is_multiple_of(*p)).unwrap_or(n);
    let (mut ore, mut oim) = (vec![0.0; n], vec![0.0; n]);
    if p == n {
        for k in 0..n {
            for j in 0..n {
                let (s, c) = (-2.0 * PI * ((j * k) % n) as f64 / n as f64).sin_cos();
                ore[k] += re[j] * c - im[j] * s;
                oim[k] += re[j] * s + im[j] * c;
            }
        }
        return (ore, oim);
    }
    let l = n / p;
    let subs: Vec<(Vec<f64>, Vec<f64>)> = (0..p)
        .map(|r| {
            let sr: Vec<f64> = (0..l).map(|j| re[j * p + r]).collect();
            let si: Vec<f64> = (0..l).map(|j| im[j * p + r]).collect();
            dft_f64(&sr, &si)
        })
        .collect();
    for k in 0..n {
        for (r, (sr, si)) in subs.iter().enumerate() {
            let (s, c) = (-2.0 * PI * ((r * k) % n) as f64 / n as f64).sin_cos();
            let (a, b) = (sr[k % l], si[k % l]);
            ore[k] += a * c - b * s;
            oim[k] += a * s + b * c;
        }
    }
    (ore, oim)
}

/// Relative cost of a Stockham stage of radix r (the generic O(r²) kernels cost more).
pub(super) fn stage_cost(r: u32) -> f64 {
    match r {
        7 => 1.5,
        11 => 2.5,
        13 => 3.0,
        _ => 1.0,
    }
}

/// Bluestein's padded length: the cheapest m >= 2n - 1 with a Stockham factorization,
/// costed as m · (two transforms + three pointwise passes).
pub fn bluestein_length(n: usize) -> usize {
    let lo = 2 * n - 1;
    (lo..=lo.next_power_of_two())
        .filter_map(|m| {
            let f = factorize(m)?;
            let stages: f64 = f.iter().map(|&r| stage_cost(r)).sum();
            Some((m as f64 * (2.0 * stages + 3.0), m))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, m)| m)
        .unwrap_or(lo.next_power_of_two())
}

pub(super) fn cis(angle: f64) -> [f32; 2] {
    let (s, c) = angle.sin_cos();
    [c as f32, s as f32]
}

pub(super) fn upload_table(ctx: &Context, table: &[[f32; 2]]) -> wgpu::Buffer {
    let data: Vec<[f32; 2]> = if table.is_empty() {
        vec![[0.0, 0.0]]
    } else {
        table.to_vec()
    };
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dkp-fft-plan"),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

pub(super) fn build_plan(ctx: &Arc<Context>, n: usize) -> Result<Plan> {
    if n <= 1 {
        return Ok(Plan {
            n,
            kind: PlanKind::Identity,
            table: None,
        });
    }
    if let Some(radices) = factorize(n) {
        let mut table: Vec<[f32; 2]> = Vec::new();
        let mut roots: HashMap<u32, u32> = HashMap::new();
        let mut stages = Vec::new();
        let mut ns = 1usize;
        for r in radices {
            let span = ns * r as usize;
            let tw_off = table.len() as u32;
            if ns > 1 {
                for k in 0..ns {
                    for q in 1..r as usize {
                        let e = (k * q) % span;
                        table.push(cis(-2.0 * PI * e as f64 / span as f64));
                    }
                }
            }
            let roots_off = *roots.entry(r).or_insert_with(|| {
                let off = table.len() as u32;
                for q in 0..r {
                    table.push(cis(-2.0 * PI * q as f64 / r as f64));
                }
                off
            });
            stages.push(Stage {
                r,
                ns: ns as u32,
                tw_off,
                roots_off,
            });
            ns = span;
        }
        return Ok(Plan {
            n,
            kind: PlanKind::Stockham(stages),
            table: Some(upload_table(ctx, &table)),
        });
    }
    // Bluestein: X_k = w_k · sum_j (x_j w_j) conj(w_{k-j}), w_k = exp(-i·pi·k²/n).
    let m = bluestein_length(n);
    let sub = plan_for(ctx, m)?;
    let w: Vec<(f64, f64)> = (0..n)
        .map(|k| {
            let e = ((k as u128 * k as u128) % (2 * n as u128)) as f64;
            let a = -PI * e / n as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let mut bre = vec![0.0f64; m];
    let mut bim = vec![0.0f64; m];
    for (k, &(c, s)) in w.iter().enumerate() {
        bre[k] = c;
        bim[k] = -s;
        if k > 0 {
            bre[m - k] = c;
            bim[m - k] = -s;
        }
    }
    let (bre, bim) = dft_f64(&bre, &bim);
    let mut table: Vec<[f32; 2]> = w.iter().map(|&(c, s)| [c as f32, s as f32]).collect();
    let bf_off = table.len() as u32;
    for k in 0..m {
        table.push([(bre[k] / m as f64) as f32, (bim[k] / m as f64) as f32]);
    }
    Ok(Plan {
        n,
        kind: PlanKind::Bluestein {
            m,
            sub,
            w_off: 0,
            bf_off,
        },
        table: Some(upload_table(ctx, &table)),
    })
}

/// The cached plan for length `n` on this context (built on first use).
pub fn plan_for(ctx: &Arc<Context>, n: usize) -> Result<Arc<Plan>> {
    ctx.memo("fft-plan", n, || build_plan(ctx, n))
}
