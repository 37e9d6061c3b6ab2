//! Bit-exact reproduction of NumPy's legacy global random state (`np.random.seed(int)`,
//! `np.random.rand`, `np.random.randn`, `np.random.normal`, `np.random.uniform`).
//!
//! The dataset generator of the official code (spec §3) seeds the legacy `RandomState` with
//! `np.random.seed(1)`; regenerating its ground-truth kernels bit for bit needs the same stream:
//!
//! * MT19937 seeded with `init_genrand(seed)` (NumPy's `seed(int)` path; an array seed would use
//!   `init_by_array`, which is not needed here);
//! * `rand()` = `((a >> 5) * 67108864 + (b >> 6)) / 2^53` from two consecutive 32-bit outputs;
//! * `randn()` = the legacy polar Box–Muller method, which produces two normals per accepted
//!   pair and caches the second one (the cache is cleared by [`NumpyRng::seed`]);
//! * `normal(loc, scale)` = `loc + scale * randn()` and `uniform(lo, hi)` = `lo + (hi - lo) *
//!   rand()`; both consume their draws even when `scale` or `hi - lo` is 0.
//!
//! `randn` uses `f64::ln` and `f64::sqrt`, i.e. the platform libm `log` like NumPy does; on
//! glibc both agree bit for bit (checked by the fixture test).

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// Source of uniform numbers in [0, 1) for the random kernel samplers. Implemented by
/// [`NumpyRng`] (bit-exact with the reference); any other generator can be plugged in where
/// reproducing NumPy's stream is not required.
pub trait KernelRng {
    /// One uniform draw in [0, 1).
    fn rand(&mut self) -> f64;
}

/// NumPy legacy `RandomState` (MT19937 + Gaussian cache).
#[derive(Clone)]
pub struct NumpyRng {
    mt: [u32; N],
    pos: usize,
    gauss: Option<f64>,
}

impl std::fmt::Debug for NumpyRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumpyRng")
            .field("pos", &self.pos)
            .field("gauss", &self.gauss)
            .finish_non_exhaustive()
    }
}

impl NumpyRng {
    /// Equivalent of `np.random.seed(seed)` on a fresh state.
    pub fn new(seed: u32) -> Self {
        let mut r = NumpyRng {
            mt: [0; N],
            pos: N,
            gauss: None,
        };
        r.seed(seed);
        r
    }

    /// `np.random.seed(seed)`: `init_genrand(seed)` and the Gaussian cache cleared.
    pub fn seed(&mut self, seed: u32) {
        self.mt[0] = seed;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.pos = N;
        self.gauss = None;
    }

    fn refill(&mut self) {
        for k in 0..N {
            let y = (self.mt[k] & UPPER_MASK) | (self.mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// Next raw tempered 32-bit MT19937 output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.refill();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `np.random.rand()`: a 53-bit uniform double in [0, 1).
    pub fn rand(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// `np.random.rand(n)` (any shape: the draws are in C order).
    pub fn rand_n(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.rand()).collect()
    }

    /// `np.random.randn()` / `standard_normal()`: legacy polar Box–Muller with caching.
    pub fn randn(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.rand() - 1.0;
            let x2 = 2.0 * self.rand() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 >= 1.0 || r2 == 0.0 {
                continue;
            }
            let f = (-2.0 * r2.ln() / r2).sqrt();
            self.gauss = Some(f * x1);
            return f * x2;
        }
    }

    /// `np.random.normal(loc, scale)` (one draw; an array is the same draws in C order).
    pub fn normal(&mut self, loc: f64, scale: f64) -> f64 {
        loc + scale * self.randn()
    }

    /// `np.random.uniform(lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rand()
    }
}

impl KernelRng for NumpyRng {
    fn rand(&mut self) -> f64 {
        NumpyRng::rand(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_draws_seed_1() {
        // np.random.seed(1); np.random.rand(3)
        let mut r = NumpyRng::new(1);
        assert_eq!(r.rand(), 0.417022004702574);
        assert_eq!(r.rand(), 0.7203244934421581);
        assert_eq!(r.rand(), 0.00011437481734488664);
    }

    #[test]
    fn seed_clears_gauss_cache() {
        let mut a = NumpyRng::new(5);
        a.randn();
        a.seed(5);
        let mut b = NumpyRng::new(5);
        assert_eq!(a.randn().to_bits(), b.randn().to_bits());
    }
}
