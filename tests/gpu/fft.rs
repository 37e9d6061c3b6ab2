use dkp::kernels::fft::{self, fft2_ref};
use dkp::{Tensor, autograd};

use crate::common::*;

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// max |got - want| / max |want| (the FFT accuracy measure).
fn rel_max_err(got: &[f32], want: &[f64]) -> f64 {
    let m = want.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    let e = got
        .iter()
        .zip(want)
        .fold(0.0f64, |a, (&g, &w)| a.max((g as f64 - w).abs()));
    e / m.max(1e-300)
}

const CASES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

#[test]
fn fft2_matches_torch_forward_inverse_and_backward() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("fft").unwrap();
    for name in CASES {
        for (inv, tag) in [(false, "fwd"), (true, "inv")] {
            let x = fx.tensor(&ctx, &format!("fft.{name}.x")).into_param();
            let gy = fx.tensor(&ctx, &format!("fft.{name}.gy"));
            let y = fft::fft2(&x, inv).unwrap();
            let (_, want) = fx.get(&format!("fft.{name}.{tag}.y"));
            let got = y.to_vec().unwrap();
            let scale = want.iter().fold(0.0f32, |a, b| a.max(b.abs())) as f64;
            assert_close(
                &format!("fft {name} {tag}"),
                &got,
                &want,
                1e-5,
                2e-6 * scale,
            );
            let grads = autograd::backward_with(&y, gy).unwrap();
            let gx = grads.get(&x).unwrap().to_vec().unwrap();
            let (_, want) = fx.get(&format!("fft.{name}.{tag}.gx"));
            let scale = want.iter().fold(0.0f32, |a, b| a.max(b.abs())) as f64;
            assert_close(
                &format!("fft {name} {tag} grad"),
                &gx,
                &want,
                1e-5,
                2e-6 * scale,
            );
        }
    }
}

#[test]
fn fft2_reference_matches_torch() {
    // The f64 CPU reference used by the large-size and gradient checks is itself checked here.
    let fx = Fixture::load("fft").unwrap();
    for name in CASES {
        let (s, x) = fx.get(&format!("fft.{name}.x"));
        let (_, want) = fx.get(&format!("fft.{name}.fwd.y"));
        let got: Vec<f32> = fft2_ref(&to64(&x), s[0], s[1], s[2], false)
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_close(&format!("fft2_ref {name}"), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn fft2_arbitrary_sizes_accuracy() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(11);
    // (batch, H, W): power of two, mixed radix, Bluestein (321 = 3*107) and degenerate sizes.
    for (b, h, w, tol) in [
        (1usize, 256usize, 256usize, 1e-5),
        (1, 480, 321, 1e-5),
        (1, 336, 228, 1e-5),
        (3, 20, 48, 1e-5),
        (1, 1, 85, 1e-5),
        (2, 7, 1, 1e-5),
        (1, 2, 1, 1e-6),
        (1, 1, 1, 1e-6),
    ] {
        let x = rng.vec(b * h * w * 2, -1.0, 1.0);
        let t = Tensor::from_slice(&ctx, &x, &[b, h, w, 2]).unwrap();
        let want = fft2_ref(&to64(&x), b, h, w, false);
        let got = fft::fft2(&t, false).unwrap().to_vec().unwrap();
        let e = rel_max_err(&got, &want);
        eprintln!("fft2 {b}x{h}x{w}: max abs err / max |X| = {e:.2e}");
        assert!(e < tol, "fft2 {h}x{w}: relative error {e:e}");
        // inverse of the forward gives back x
        let y = fft::fft2(
            &Tensor::from_slice(&ctx, &got, &[b, h, w, 2]).unwrap(),
            true,
        )
        .unwrap()
        .to_vec()
        .unwrap();
        let e = rel_max_err(&y, &to64(&x));
        assert!(e < 2.0 * tol, "ifft2(fft2) {h}x{w}: relative error {e:e}");
    }
}

#[test]
fn fft2_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(5);
    for (b, h, w) in [(2usize, 3usize, 5usize), (1, 17, 4), (1, 1, 6)] {
        for inv in [false, true] {
            let x = rng.vec(b * h * w * 2, -1.0, 1.0);
            gradcheck(
                &ctx,
                &format!("fft2 {h}x{w} inv={inv}"),
                &[(vec![b, h, w, 2], x)],
                &|t| fft::fft2(&t[0], inv),
                &|x| fft2_ref(&x[0], b, h, w, inv),
                1e-2,
                1e-3,
                1e-4,
                40,
            )
            .unwrap();
        }
    }
}

#[test]
fn plans_factorize_or_fall_back_to_bluestein() {
    assert_eq!(fft::factorize(256), Some(vec![8, 8, 4]));
    assert_eq!(fft::factorize(504), Some(vec![8, 3, 3, 7]));
    assert_eq!(fft::factorize(480), Some(vec![8, 4, 3, 5]));
    assert_eq!(fft::factorize(228), None); // 4·3·19
    assert_eq!(fft::factorize(336), Some(vec![8, 2, 3, 7]));
    assert_eq!(fft::factorize(321), None);
    assert_eq!(fft::bluestein_length(321), 672); // 8·4·3·7 >= 641
    assert_eq!(fft::bluestein_length(17), 35); // 5·7
    for n in [
        17usize, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    ] {
        let m = fft::bluestein_length(n);
        assert!(m >= 2 * n - 1 && fft::factorize(m).is_some(), "{n} -> {m}");
    }
    let Some(ctx) = ctx() else { return };
    assert_eq!(
        fft::plan_for(&ctx, 321).unwrap().describe(),
        "321: Bluestein over 672"
    );
    let a = fft::plan_for(&ctx, 336).unwrap();
    let b = fft::plan_for(&ctx, 336).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "plans are cached");
}

#[test]
fn complex_mul_and_div_real_broadcast_with_grads() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("fft").unwrap();
    let a = fx.tensor(&ctx, "cmul.a").into_param();
    let b = fx.tensor(&ctx, "cmul.b").into_param();
    let y = fft::complex_mul(&a, &b).unwrap();
    assert_close(
        "cmul",
        &y.to_vec().unwrap(),
        &fx.get("cmul.y").1,
        1e-5,
        1e-6,
    );
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "cmul.gy")).unwrap();
    let ga = g.get(&a).unwrap().to_vec().unwrap();
    let gb = g.get(&b).unwrap().to_vec().unwrap();
    assert_close("cmul ga", &ga, &fx.get("cmul.ga").1, 1e-5, 1e-6);
    assert_close("cmul gb", &gb, &fx.get("cmul.gb").1, 1e-5, 1e-5);

    let z = fx.tensor(&ctx, "cdiv.z").into_param();
    let r = fx.tensor(&ctx, "cdiv.r").into_param();
    let y = fft::complex_div_real(&z, &r).unwrap();
    assert_close(
        "cdiv",
        &y.to_vec().unwrap(),
        &fx.get("cdiv.y").1,
        1e-5,
        1e-6,
    );
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "cdiv.gy")).unwrap();
    let gz = g.get(&z).unwrap().to_vec().unwrap();
    let gr = g.get(&r).unwrap().to_vec().unwrap();
    assert_close("cdiv gz", &gz, &fx.get("cdiv.gz").1, 1e-5, 1e-6);
    assert_close("cdiv gr", &gr, &fx.get("cdiv.gr").1, 1e-5, 1e-5);

    let z = fx.tensor(&ctx, "cabs.z").into_param();
    let y = fft::complex_abs(&z).unwrap();
    assert_close(
        "cabs",
        &y.to_vec().unwrap(),
        &fx.get("cabs.y").1,
        1e-6,
        1e-7,
    );
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "cabs.gy")).unwrap();
    let gz = g.get(&z).unwrap().to_vec().unwrap();
    assert_close("cabs gz", &gz, &fx.get("cabs.gz").1, 1e-5, 1e-6);
}

#[test]
fn complex_ops_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(9);
    let (sa, sb) = (vec![2usize, 3, 4], vec![3usize, 1]);
    let (la, lb) = (sa.clone(), sb.clone());
    let a = rng.vec(24 * 2, -1.0, 1.0);
    let b = rng.vec(3 * 2, -1.0, 1.0);
    gradcheck(
        &ctx,
        "complex_mul",
        &[(vec![2, 3, 4, 2], a.clone()), (vec![3, 1, 2], b)],
        &|t| fft::complex_mul(&t[0], &t[1]),
        &|x| fft::complex_mul_ref(&x[0], &la, &x[1], &lb),
        1e-3,
        1e-3,
        1e-4,
        48,
    )
    .unwrap();
    let r = rng.vec(4, 0.5, 2.0);
    let (lz, lr) = (sa.clone(), vec![4usize]);
    gradcheck(
        &ctx,
        "complex_div_real",
        &[(vec![2, 3, 4, 2], a.clone()), (vec![4], r)],
        &|t| fft::complex_div_real(&t[0], &t[1]),
        &|x| fft::complex_div_real_ref(&x[0], &lz, &x[1], &lr),
        1e-3,
        1e-3,
        1e-4,
        48,
    )
    .unwrap();
    // |z|, re, im, conj, from_real composed into one real map per element.
    gradcheck(
        &ctx,
        "complex maps",
        &[(vec![2, 3, 4, 2], a)],
        &|t| {
            let z = fft::complex_conj(&t[0])?;
            let m = fft::complex_abs(&z)?;
            let re = fft::real_part(&z)?;
            let im = fft::imag_part(&z)?;
            let s = dkp::ops::add(&dkp::ops::mul(&m, &re)?, &im)?;
            fft::real_part(&fft::complex_from_real(&s)?)
        },
        &|x| {
            x[0].chunks(2)
                .map(|c| {
                    let (re, im) = (c[0], -c[1]);
                    (re * re + im * im).sqrt() * re + im
                })
                .collect()
        },
        1e-3,
        1e-3,
        1e-4,
        48,
    )
    .unwrap();
}

#[test]
fn splits_tile_p2o_match_torch_with_grads() {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("fft").unwrap();
    let z = fx.tensor(&ctx, "splits.z").into_param();
    let y = fft::splits_mean(&z, 3).unwrap();
    assert_close(
        "splits",
        &y.to_vec().unwrap(),
        &fx.get("splits.y").1,
        1e-5,
        1e-6,
    );
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "splits.gy")).unwrap();
    let gz = g.get(&z).unwrap().to_vec().unwrap();
    assert_close("splits gz", &gz, &fx.get("splits.gz").1, 1e-5, 1e-7);

    let z = fx.tensor(&ctx, "tile.z").into_param();
    let y = fft::tile(&z, 3).unwrap();
    assert_close("tile", &y.to_vec().unwrap(), &fx.get("tile.y").1, 0.0, 0.0);
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "tile.gy")).unwrap();
    let gz = g.get(&z).unwrap().to_vec().unwrap();
    assert_close("tile gz", &gz, &fx.get("tile.gz").1, 1e-5, 1e-6);

    let k = fx.tensor(&ctx, "p2o.k").into_param();
    let y = fft::p2o(&k, 12, 15).unwrap();
    assert_close("p2o", &y.to_vec().unwrap(), &fx.get("p2o.y").1, 1e-5, 1e-5);
    let g = autograd::backward_with(&y, fx.tensor(&ctx, "p2o.gy")).unwrap();
    let gk = g.get(&k).unwrap().to_vec().unwrap();
    assert_close("p2o gk", &gk, &fx.get("p2o.gk").1, 1e-5, 1e-4);
}

#[test]
fn splits_tile_p2o_gradcheck() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(21);
    let z = rng.vec(2 * 6 * 4 * 2, -1.0, 1.0);
    gradcheck(
        &ctx,
        "splits_mean",
        &[(vec![2, 6, 4, 2], z)],
        &|t| fft::splits_mean(&t[0], 2),
        &|x| fft::splits_mean_ref(&x[0], 2, 6, 4, 2),
        1e-3,
        1e-3,
        1e-5,
        48,
    )
    .unwrap();
    let z = rng.vec(3 * 2 * 2, -1.0, 1.0);
    gradcheck(
        &ctx,
        "tile",
        &[(vec![1, 3, 2, 2], z)],
        &|t| fft::tile(&t[0], 3),
        &|x| fft::tile_ref(&x[0], 1, 3, 2, 3),
        1e-3,
        1e-3,
        1e-5,
        12,
    )
    .unwrap();
    let k = rng.vec(2 * 3 * 3, 0.0, 1.0);
    gradcheck(
        &ctx,
        "p2o",
        &[(vec![2, 3, 3], k)],
        &|t| fft::p2o(&t[0], 5, 7),
        &|x| fft::p2o_ref(&x[0], 2, 3, 3, 5, 7),
        1e-2,
        1e-3,
        1e-4,
        18,
    )
    .unwrap();
}

#[test]
fn fft_shape_errors_name_the_op() {
    let Some(ctx) = ctx() else { return };
    let x = Tensor::zeros(&ctx, &[4, 6, 3]).unwrap();
    let e = fft::fft2(&x, false).unwrap_err().to_string();
    assert!(e.contains("fft2") && e.contains("[4, 6, 3]"), "{e}");
    let z = Tensor::zeros(&ctx, &[1, 7, 6, 2]).unwrap();
    let e = fft::splits_mean(&z, 2).unwrap_err().to_string();
    assert!(e.contains("splits_mean") && e.contains("7x6"), "{e}");
    let k = Tensor::zeros(&ctx, &[1, 9, 9]).unwrap();
    let e = fft::p2o(&k, 8, 8).unwrap_err().to_string();
    assert!(e.contains("p2o"), "{e}");
}

#[test]
fn fast_division_is_exact() {
    let mut rng = Rng::new(99);
    let mut divisors: Vec<u32> = (1..2000).collect();
    divisors.extend([
        4095,
        65535,
        65536,
        65537,
        1 << 20,
        3 << 20,
        1_000_003,
        u32::MAX / 3,
        1 << 31,
        (1 << 31) + 1,
        u32::MAX,
    ]);
    for &d in &divisors {
        let dv = dkp::kernels::fast_div::fast_divisor(d);
        let mut ns: Vec<u32> = vec![0, 1, d - 1, d, d.wrapping_add(1), u32::MAX, u32::MAX - 1];
        ns.extend((0..200).map(|_| rng.next_u64() as u32));
        ns.extend((0..200).map(|_| (rng.next_u64() % (1 << 24)) as u32));
        for n in ns {
            assert_eq!(dkp::kernels::fast_div::fast_div(n, dv), n / d, "{n} / {d}");
        }
    }
}

/// USRNet's closed-form data step (spec §5.2, steps 1-6) composed from these ops, against the
/// official PyTorch code in f64, with gradients wrt the image and the kernel.
#[test]
fn usrnet_data_step_matches_torch() {
    use dkp::ops;
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("fft").unwrap();
    let (sf, alpha) = (2usize, 0.05f32);
    let x = fx.tensor(&ctx, "usr.x").into_param();
    let k = fx.tensor(&ctx, "usr.k").into_param();
    let (ys, y) = fx.get("usr.y");
    let (h, w) = (ys[2] * sf, ys[3] * sf);
    // zero-insertion upsampling S^T y (input preparation, not differentiated here)
    let mut sty = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..ys[2] {
            for j in 0..ys[3] {
                sty[(c * h + i * sf) * w + j * sf] = y[(c * ys[2] + i) * ys[3] + j];
            }
        }
    }
    let sty = Tensor::from_slice(&ctx, &sty, &[1, 3, h, w]).unwrap();
    let run = || -> dkp::Result<Tensor> {
        let fb = fft::p2o(&k, h, w)?;
        let fbc = fft::complex_conj(&fb)?;
        let f2b = ops::square(&fft::complex_abs(&fb)?)?;
        let fbfy = fft::complex_mul(&fbc, &fft::fft2(&fft::complex_from_real(&sty)?, false)?)?;
        let fr = ops::add(
            &fbfy,
            &fft::fft2(
                &fft::complex_from_real(&ops::mul_scalar(&x, alpha)?)?,
                false,
            )?,
        )?;
        let x1 = fft::complex_mul(&fb, &fr)?;
        let fbr = fft::splits_mean(&x1, sf)?;
        let invw = fft::real_part(&fft::splits_mean(&fft::complex_from_real(&f2b)?, sf)?)?;
        let invwbr = fft::complex_div_real(&fbr, &ops::add_scalar(&invw, alpha)?)?;
        let fcb = fft::complex_mul(&fbc, &fft::tile(&invwbr, sf)?)?;
        let fxx = ops::mul_scalar(&ops::sub(&fr, &fcb)?, 1.0 / alpha)?;
        fft::real_part(&fft::fft2(&fxx, true)?)
    };
    let out = run().unwrap();
    let (_, want) = fx.get("usr.out");
    assert_close(
        "usrnet data step",
        &out.to_vec().unwrap(),
        &want,
        1e-5,
        1e-6,
    );
    let g = autograd::backward_with(&out, fx.tensor(&ctx, "usr.gy")).unwrap();
    for (t, name) in [(&x, "usr.gx"), (&k, "usr.gk")] {
        let (_, want) = fx.get(name);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        assert_close(
            name,
            &g.get(t).unwrap().to_vec().unwrap(),
            &want,
            1e-4,
            1e-5 * scale,
        );
    }
}
