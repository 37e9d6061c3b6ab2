use dkp::method::rng::NumpyRng;

use crate::common::load_f64;

fn same(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}[{i}]: got {g:e}, want {w:e}"
        );
    }
}

/// Every scenario of tools/golden/numpy_rng.py is reproduced bit for bit.
#[test]
fn numpy_legacy_stream_bit_exact() {
    let f = load_f64("numpy_rng");

    let mut r = NumpyRng::new(1);
    same("seed1_rand700", &r.rand_n(700), &f["seed1_rand700"]);

    let mut r = NumpyRng::new(0);
    let v: Vec<f64> = (0..11).map(|_| r.randn()).collect();
    same("seed0_randn11", &v, &f["seed0_randn11"]);

    let mut r = NumpyRng::new(12345);
    let mut v = vec![
        r.rand(),
        r.randn(),
        r.rand(),
        r.randn(),
        r.uniform(-2.0, 3.0),
    ];
    v.extend((0..5).map(|_| r.normal(0.5, 2.0)));
    v.push(r.uniform(0.0, 0.0));
    v.extend((0..3).map(|_| r.normal(0.0, 0.0)));
    v.push(r.rand());
    same("seed12345_mixed", &v, &f["seed12345_mixed"]);

    let mut r = NumpyRng::new(u32::MAX);
    let mut v = r.rand_n(5);
    v.extend((0..5).map(|_| r.randn()));
    same("seedmax_rand5_randn5", &v, &f["seedmax_rand5_randn5"]);

    let mut r = NumpyRng::new(7);
    r.randn();
    r.seed(7);
    let v: Vec<f64> = (0..3).map(|_| r.randn()).collect();
    same("seed7_reseed_randn3", &v, &f["seed7_reseed_randn3"]);
}
