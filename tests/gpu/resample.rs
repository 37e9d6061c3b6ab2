use dkp::gpu::Tuning;
use dkp::kernels::resample::{
    self as rs, avg_pool2x2_ref, bicubic_ref, bilinear_ref, max_pool2x2_ref, nearest_ref,
};
use dkp::kernels::variant::{Forced, force};
use dkp::{Tensor, autograd};

use crate::common::*;

fn check_golden(name: &str, f: &dyn Fn(&Tensor) -> dkp::Result<Tensor>, rtol: f64, atol: f64) {
    let Some(ctx) = ctx() else { return };
    let fx = Fixture::load("resample").unwrap();
    let x = fx.tensor(&ctx, &format!("{name}.x")).into_param();
    let y = f(&x).unwrap();
    let (ys, yv) = fx.get(&format!("{name}.y"));
    assert_eq!(y.shape(), ys.as_slice(), "{name} shape");
    assert_close(
        &format!("{name} forward"),
        &y.to_vec().unwrap(),
        &yv,
        rtol,
        atol,
    );
    let grads = autograd::backward_with(&y, fx.tensor(&ctx, &format!("{name}.gy"))).unwrap();
    assert_close(
        &format!("{name} gx"),
        &grads.get(&x).unwrap().to_vec().unwrap(),
        &fx.get(&format!("{name}.gx")).1,
        rtol,
        atol,
    );
}

#[test]
fn bilinear2x_matches_pytorch_in_both_tunings() {
    for t in [Tuning::Software, Tuning::Gpu] {
        force(Forced::tuning(t), || {
            let f = |x: &Tensor| rs::upsample_bilinear2x(x);
            check_golden("bilinear", &f, 1e-5, 1e-6);
            check_golden("bilinear_1px", &f, 1e-5, 1e-6);
        });
    }
}

#[test]
fn bicubic_matches_pytorch_down_up_and_mixed() {
    check_golden("bicubic_down", &|x| rs::bicubic_resize(x, 5, 5), 2e-5, 5e-6);
    check_golden("bicubic_up", &|x| rs::bicubic_resize(x, 29, 40), 2e-5, 5e-6);
    check_golden(
        "bicubic_mixed",
        &|x| rs::bicubic_resize(x, 29, 8),
        1e-5,
        2e-6,
    );
    check_golden("bicubic_x3", &|x| rs::bicubic_resize(x, 24, 21), 2e-5, 5e-6);
}

#[test]
fn nearest_and_pooling_match_pytorch() {
    check_golden("nearest3", &|x| rs::upsample_nearest(x, 3), 1e-6, 1e-6);
    check_golden("avgpool", &rs::avg_pool2x2, 1e-6, 1e-6);
    // quantized input: many ties, the gradient must go to the first maximum
    check_golden("maxpool", &rs::max_pool2x2, 0.0, 0.0);
}

/// Sections of the spec's operators_reference.txt: the numbers after the ':' of each line.
fn testvector_section(name: &str) -> Option<Vec<Vec<f64>>> {
    let dir = dkp::testing::testvectors_dir();
    let text = std::fs::read_to_string(dir.join("operators_reference.txt")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with(&format!("[{name}]")));
    let mut out = Vec::new();
    if let Some(first) = lines.next() {
        out.push(first.to_string());
    }
    out.extend(
        lines
            .take_while(|l| !l.trim().is_empty() && !l.starts_with('['))
            .map(str::to_string),
    );
    Some(
        out.iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(_, nums)| {
                nums.split_whitespace()
                    .map(|v| v.parse::<f64>().unwrap())
                    .collect()
            })
            .collect(),
    )
}

#[test]
fn spec_testvectors_bilinear_and_bicubic() {
    let Some(ctx) = ctx() else { return };
    let bil = testvector_section("bilinear_x2").unwrap();
    assert_eq!((bil[0].len(), bil[1].len()), (12, 48));
    let xin: Vec<f32> = (0..12).map(|i| (i as f64).powf(1.5) as f32).collect();
    let xs: Vec<f32> = bil[0].iter().map(|&v| v as f32).collect();
    assert_close("bilinear_x2 input", &xin, &xs, 1e-7, 0.0);
    let x = Tensor::from_slice(&ctx, &xin, &[1, 1, 3, 4]).unwrap();
    let y = rs::upsample_bilinear2x(&x).unwrap();
    assert_eq!(y.shape(), &[1, 1, 6, 8]);
    let want: Vec<f32> = bil[1].iter().map(|&v| v as f32).collect();
    assert_close("[bilinear_x2]", &y.to_vec().unwrap(), &want, 1e-6, 1e-6);

    let bic = testvector_section("bicubic").unwrap();
    assert_eq!((bic[0].len(), bic[1].len()), (25, 256));
    let v: Vec<f32> = (0..256)
        .map(|k| {
            let (i, j) = ((k / 16) as f64, (k % 16) as f64);
            ((0.4 * i).sin() * (0.3 * j).cos() + 0.5) as f32
        })
        .collect();
    let x = Tensor::from_slice(&ctx, &v, &[1, 1, 16, 16]).unwrap();
    let down = rs::bicubic_resize(&x, 5, 5).unwrap();
    let want: Vec<f32> = bic[0].iter().map(|&v| v as f32).collect();
    assert_close(
        "[bicubic] down to 5x5",
        &down.to_vec().unwrap(),
        &want,
        1e-5,
        2e-6,
    );
    let up = rs::bicubic_resize(&down, 16, 16).unwrap();
    let want: Vec<f32> = bic[1].iter().map(|&v| v as f32).collect();
    assert_close(
        "[bicubic] then up to 16x16",
        &up.to_vec().unwrap(),
        &want,
        1e-5,
        2e-6,
    );
    // and the f64 reference agrees with the spec's numbers
    let vd: Vec<f64> = v.iter().map(|&a| a as f64).collect();
    let d = bicubic_ref(&vd, &[1, 1, 16, 16], 5, 5);
    for (a, b) in d.iter().zip(&bic[0]) {
        assert!((a - b).abs() < 1e-7, "bicubic_ref {a} vs {b}");
    }
}

fn gc(
    what: &str,
    shape: &[usize],
    gpu: &dyn Fn(&[Tensor]) -> dkp::Result<Tensor>,
    cpu: &dyn Fn(&[Vec<f64>]) -> Vec<f64>,
) {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(17);
    let inputs = vec![(shape.to_vec(), rng.vec(shape.iter().product(), -1.0, 1.0))];
    gradcheck(&ctx, what, &inputs, gpu, cpu, 1e-3, 1e-3, 1e-4, 200).unwrap();
}

#[test]
fn resample_gradchecks() {
    let s = [2, 2, 5, 7];
    gc(
        "bilinear2x",
        &s,
        &|t| rs::upsample_bilinear2x(&t[0]),
        &|v| bilinear_ref(&v[0], &s, 10, 14),
    );
    for (oh, ow) in [(3, 4), (11, 16), (4, 19)] {
        gc(
            &format!("bicubic {oh}x{ow}"),
            &s,
            &|t| rs::bicubic_resize(&t[0], oh, ow),
            &|v| bicubic_ref(&v[0], &s, oh, ow),
        );
    }
    gc("nearest", &s, &|t| rs::upsample_nearest(&t[0], 2), &|v| {
        nearest_ref(&v[0], &s, 2)
    });
    gc("avg_pool2x2", &s, &|t| rs::avg_pool2x2(&t[0]), &|v| {
        avg_pool2x2_ref(&v[0], &s)
    });
    gc("max_pool2x2", &s, &|t| rs::max_pool2x2(&t[0]), &|v| {
        max_pool2x2_ref(&v[0], &s)
    });
}

#[test]
fn bilinear2x_beyond_the_binding_limit() {
    let Some(ctx) = ctx() else { return };
    // [1,144,256,256] -> [1,144,512,512] = 151 MB of output: split into plane chunks
    let (c, h) = (144usize, 256usize);
    if ((c * 4 * h * h * 4) as u64) <= ctx.max_binding() {
        eprintln!("adapter binding limit is large; split path not exercised");
        return;
    }
    let mut rng = Rng::new(3);
    let plane = rng.vec(h * h, 0.0, 1.0);
    let mut xv = Vec::with_capacity(c * h * h);
    for k in 0..c {
        xv.extend(plane.iter().map(|v| v + k as f32));
    }
    let x = Tensor::from_slice(&ctx, &xv, &[1, c, h, h])
        .unwrap()
        .into_param();
    let y = rs::upsample_bilinear2x(&x).unwrap();
    let g = Tensor::full(&ctx, y.shape(), 1.0).unwrap();
    let yv = y.to_vec().unwrap();
    let gx = autograd::backward_with(&y, g)
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec()
        .unwrap();
    let pd: Vec<f64> = plane.iter().map(|&v| v as f64).collect();
    let want0 = bilinear_ref(&pd, &[1, 1, h, h], 2 * h, 2 * h);
    let o = 4 * h * h;
    for k in [0, 120, 127, 128, 143] {
        let got = &yv[k * o..(k + 1) * o];
        let want: Vec<f32> = want0.iter().map(|v| (v + k as f64) as f32).collect();
        assert_close(&format!("plane {k}"), got, &want, 1e-6, 1e-5);
        // every input pixel receives total weight 4 from a ones gradient
        let gk = &gx[k * h * h..(k + 1) * h * h];
        assert!(gk.iter().all(|&v| (v - 4.0).abs() < 1e-5), "gx plane {k}");
    }
}
