//! Integration tests of dkp-convert: conversions against Python-written expectations, the
//! spec's usrnet_tiny checkpoint, hostile pickles, corrupted/truncated files and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use dkp_convert::{
    Checkpoint, Error, Format, KeyMap, LoadOptions, PrefixMode, WriteOptions, keymap, pickle,
    write_safetensors,
};
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The real USRNet-tiny checkpoint (the spec's legacy-format `.pth`, committed as a fixture)
/// and its reference conversion (the repository's shipped weights).
fn usrnet_pth() -> PathBuf {
    fixture("usrnet_tiny.pth")
}
fn usrnet_safetensors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/usrnet_tiny.safetensors")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn load(bytes: Vec<u8>) -> dkp_convert::Result<Checkpoint> {
    Checkpoint::from_bytes(bytes, &LoadOptions::default())
}

fn to_safetensors(ckpt: &mut Checkpoint, f16: bool) -> dkp_convert::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_safetensors(
        ckpt,
        &mut out,
        &WriteOptions {
            f16,
            metadata: vec![("format".into(), "pt".into())],
        },
    )?;
    Ok(out)
}

/// Same names, dtypes, shapes and bytes.
fn assert_same_tensors(got: &[u8], want: &[u8], what: &str) {
    let g = SafeTensors::deserialize(got).unwrap_or_else(|e| panic!("{what}: output: {e}"));
    let w = SafeTensors::deserialize(want).unwrap_or_else(|e| panic!("{what}: expected: {e}"));
    let mut gn: Vec<_> = g.names();
    let mut wn: Vec<_> = w.names();
    gn.sort();
    wn.sort();
    assert_eq!(gn, wn, "{what}: tensor names");
    for n in wn {
        let (a, b) = (g.tensor(n).unwrap(), w.tensor(n).unwrap());
        assert_eq!(a.dtype(), b.dtype(), "{what}: dtype of {n}");
        assert_eq!(a.shape(), b.shape(), "{what}: shape of {n}");
        assert!(a.data() == b.data(), "{what}: bytes of {n} differ");
    }
}

fn convert_file(name: &str, f16: bool) -> Vec<u8> {
    let mut c = load(read(&fixture(name))).unwrap_or_else(|e| panic!("{name}: {e}"));
    to_safetensors(&mut c, f16).unwrap()
}

// ------------------------------------------------------------------------- conversions

#[test]
fn usrnet_tiny_legacy_matches_spec_safetensors() {
    let (pth, st) = (usrnet_pth(), usrnet_safetensors());
    let mut c = load(read(&pth)).unwrap();
    assert_eq!(c.format, Format::Legacy);
    assert_eq!(c.tensors.len(), 42);
    let values: usize = c.tensors.iter().map(|t| t.numel()).sum();
    assert_eq!(values, 590_332);
    let report = keymap::check(KeyMap::Usrnet, &c.tensors);
    assert!(report.is_clean(), "{}", report.render());
    let out = to_safetensors(&mut c, false).unwrap();
    assert_same_tensors(&out, &read(&st), "usrnet_tiny");
    // The committed copy in weights/ is the same file.
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/usrnet_tiny.safetensors");
    assert_same_tensors(&out, &read(&committed), "weights/usrnet_tiny");
}

#[test]
fn zip_f32_state_dict() {
    let want = read(&fixture("f32.safetensors"));
    for name in ["f32.pt", "f32_proto4.pt", "f32_legacy.pt"] {
        assert_same_tensors(&convert_file(name, false), &want, name);
    }
    let c = load(read(&fixture("f32_legacy.pt"))).unwrap();
    assert_eq!(c.format, Format::Legacy);
    let c = load(read(&fixture("f32.pt"))).unwrap();
    assert_eq!(c.format, Format::Zip);
}

#[test]
fn f16_bf16_f64_int_bool_dtypes() {
    assert_same_tensors(
        &convert_file("f16.pt", false),
        &read(&fixture("f16.safetensors")),
        "f16.pt",
    );
}

#[test]
fn f16_conversion_matches_torch_rounding() {
    assert_same_tensors(
        &convert_file("f32.pt", true),
        &read(&fixture("f32_as_f16.safetensors")),
        "f32.pt --f16",
    );
}

#[test]
fn views_sharing_storage_are_copied_out() {
    let want = read(&fixture("views.safetensors"));
    for name in ["views.pt", "views_legacy.pt"] {
        assert_same_tensors(&convert_file(name, false), &want, name);
        let c = load(read(&fixture(name))).unwrap();
        let views: Vec<_> = c
            .tensors
            .iter()
            .filter(|t| t.is_view)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(views.len(), 8, "{name}: {views:?}");
    }
}

#[test]
fn nested_wrapper_and_module_prefix() {
    let bytes = read(&fixture("nested.pt"));
    let mut c = load(bytes.clone()).unwrap();
    assert!(
        c.notes.iter().any(|n| n.contains("`state_dict`")),
        "{:?}",
        c.notes
    );
    assert!(
        c.notes.iter().any(|n| n.contains("`module.`")),
        "{:?}",
        c.notes
    );
    let out = to_safetensors(&mut c, false).unwrap();
    assert_same_tensors(&out, &read(&fixture("nested.safetensors")), "nested.pt");

    let keep = Checkpoint::from_bytes(
        bytes.clone(),
        &LoadOptions {
            key: Some("state_dict".into()),
            prefix: PrefixMode::Keep,
        },
    )
    .unwrap();
    assert!(keep.tensors.iter().all(|t| t.name.starts_with("module.")));

    let custom = Checkpoint::from_bytes(
        bytes.clone(),
        &LoadOptions {
            key: None,
            prefix: PrefixMode::Strip("module.conv.".into()),
        },
    )
    .unwrap();
    assert!(custom.tensors.iter().any(|t| t.name == "weight"));
    assert!(custom.tensors.iter().any(|t| t.name == "module.fc.weight"));

    let e = Checkpoint::from_bytes(
        bytes,
        &LoadOptions {
            key: Some("nope".into()),
            prefix: PrefixMode::Auto,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no key `nope`") && e.contains("state_dict"),
        "{e}"
    );
}

// ------------------------------------------------------------------------- hostile input

#[test]
fn hostile_pickles_are_refused() {
    for (name, global) in [
        ("hostile_system.pt", "posix.system"),
        ("hostile_eval_legacy.pt", "__builtin__.eval"),
    ] {
        let e = load(read(&fixture(name))).unwrap_err();
        assert!(matches!(e, Error::ForbiddenGlobal(_)), "{name}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "refusing to load: the pickle references global `{global}`; only state-dict tensors are supported"
            )
        );
    }
}

#[test]
fn truncated_files_fail_cleanly() {
    let mut files = vec![
        read(&fixture("f32.pt")),
        read(&fixture("f32_legacy.pt")),
        read(&fixture("views_legacy.pt")),
    ];
    files.push(read(&usrnet_pth()));
    for f in files {
        let n = f.len();
        let mut cuts: Vec<usize> = (0..n.min(12_000)).step_by(7).collect();
        cuts.extend([n / 2, n - 1, n - 8, n - 100]);
        for cut in cuts {
            let r = load(f[..cut].to_vec()).and_then(|mut c| to_safetensors(&mut c, false));
            assert!(r.is_err(), "a file cut at {cut} of {n} bytes was accepted");
        }
    }
}

#[test]
fn corrupt_bytes_give_clean_errors() {
    // An opcode byte of the state-dict pickle replaced by an unknown opcode.
    let mut f = read(&fixture("f32_legacy.pt"));
    let pos = f.windows(4).position(|w| w == b"conv").unwrap() - 5; // the 'X' before the key
    assert_eq!(f[pos], b'X');
    f[pos] = 0xff;
    let e = load(f).unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedOpcode { opcode: 0xff, .. }),
        "{e:?}"
    );

    // A flipped byte inside a zip storage entry is caught by the CRC check.
    let want = read(&fixture("f32.safetensors"));
    let st = SafeTensors::deserialize(&want).unwrap();
    let raw = st.tensor("conv.weight").unwrap().data().to_vec();
    let mut f = read(&fixture("f32.pt"));
    let at = f.windows(16).position(|w| w == &raw[..16]).unwrap() + 40;
    f[at] ^= 0x55;
    let e = load(f)
        .and_then(|mut c| to_safetensors(&mut c, false))
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("checksum"), "{e}");

    // Not a checkpoint at all.
    let e = load(b"hello world, definitely not a checkpoint".to_vec()).unwrap_err();
    assert!(matches!(e, Error::NotCheckpoint(_)), "{e:?}");
    let e = load(Vec::new()).unwrap_err();
    assert!(matches!(e, Error::NotCheckpoint(_)), "{e:?}");
}

/// xorshift64* — a tiny seeded RNG so the fuzz loop is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>, region: usize) {
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(region.min(f.len()).max(1));
        match rng.below(6) {
            0 => f[i] ^= 1 << rng.below(8),
            1 => f[i] = rng.next() as u8,
            2 => f[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)],
            3 => {
                f.remove(i);
            }
            4 => f.insert(i, rng.next() as u8),
            _ => {
                // overwrite a little-endian u32 length/count field with an extreme value
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff][rng.below(4)];
                for (k, b) in v.to_le_bytes().iter().enumerate() {
                    if i + k < f.len() {
                        f[i + k] = *b;
                    }
                }
            }
        }
        if f.is_empty() {
            f.push(0);
        }
    }
}

/// Random mutations of valid files never panic (the result may be Ok or Err).
#[test]
fn fuzz_mutations_never_panic() {
    // DKP_CONVERT_FUZZ_SCALE=N runs N times more iterations (and another seed per scale).
    let scale: usize = std::env::var("DKP_CONVERT_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ scale as u64);
    let mut cases: Vec<(Vec<u8>, usize, usize)> = vec![];
    for name in [
        "f32.pt",
        "f16.pt",
        "views.pt",
        "f32_legacy.pt",
        "views_legacy.pt",
        "nested.pt",
    ] {
        let f = read(&fixture(name));
        let n = f.len();
        cases.push((f, n, 400));
    }
    // mutate the pickle part (first ~9.4 kB) and the first storage headers
    cases.push((read(&usrnet_pth()), 9_600, 150));
    let (mut ok, mut err) = (0, 0);
    for (orig, region, iters) in cases {
        for _ in 0..iters * scale {
            let mut f = orig.clone();
            mutate(&mut rng, &mut f, region);
            match load(f).and_then(|mut c| to_safetensors(&mut c, rng.below(2) == 0)) {
                Ok(out) => {
                    SafeTensors::deserialize(&out).expect("accepted input must give valid output");
                    ok += 1;
                }
                Err(_) => err += 1,
            }
        }
    }
    eprintln!("fuzz: {ok} accepted, {err} rejected");
    assert!(err > 0);
}

/// Random opcode soup fed straight to the pickle VM.
#[test]
fn fuzz_pickle_vm_never_panics() {
    const OPS: &[u8] =
        b"()}]tseauXJKMqhjrRbQ.N\x80\x85\x86\x87\x88\x89\x8a\x8c\x93\x94\x95cdl012pgGBCTU";
    let scale: usize = std::env::var("DKP_CONVERT_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(12345 + scale as u64);
    for _ in 0..20_000 * scale {
        let len = rng.below(48);
        let p: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.next() as u8
                } else {
                    OPS[rng.below(OPS.len())]
                }
            })
            .collect();
        let _ = pickle::unpickle(&p, 0, "fuzz");
    }
}

// ------------------------------------------------------------------------- hand-built legacy files

/// A minimal pickle writer for hand-crafted legacy streams.
#[derive(Default)]
struct P(Vec<u8>);
impl P {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn i(&mut self, v: i32) -> &mut Self {
        self.0.push(b'J');
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.op(format!("c{m}\n{n}\n").as_bytes())
    }
    fn ints(&mut self, v: &[i32]) -> &mut Self {
        self.op(b"(");
        for &x in v {
            self.i(x);
        }
        self.op(b"t")
    }
    #[allow(clippy::too_many_arguments)]
    fn tensor(
        &mut self,
        class: &str,
        key: &str,
        numel: i32,
        view: Option<(&str, i32, i32)>,
        offset: i32,
        shape: &[i32],
        stride: &[i32],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.s("storage")
            .global("torch", class)
            .s(key)
            .s("cpu")
            .i(numel);
        match view {
            None => self.op(b"N"),
            Some((k, o, n)) => {
                self.op(b"(").s(k).i(o).i(n);
                self.op(b"t")
            }
        };
        self.op(b"tQ").i(offset).ints(shape).ints(stride);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

fn legacy_file(little: bool, body: &[u8], keys: &[&str], storages: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    f.extend_from_slice(b"\x80\x02M\xe9\x03.");
    let mut sys = P::default();
    sys.op(b"\x80\x02}(")
        .s("little_endian")
        .op(if little { b"\x88" } else { b"\x89" });
    sys.op(b"u.");
    f.extend_from_slice(&sys.0);
    f.extend_from_slice(body);
    let mut k = P::default();
    k.op(b"\x80\x02](");
    for key in keys {
        k.s(key);
    }
    k.op(b"e.");
    f.extend_from_slice(&k.0);
    for (n, data) in storages {
        f.extend_from_slice(&n.to_le_bytes());
        f.extend_from_slice(data);
    }
    f
}

fn f32s(got: &[u8]) -> Vec<f32> {
    got.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn legacy_view_metadata_and_big_endian() {
    // root storage s0 = [0, 1, ..., 7] (f32); tensor `a` uses the view (offset 2, 5 elements)
    // with its own offset 1, shape [2], stride [2]: root elements 3 and 5.
    let mut body = P::default();
    body.op(b"\x80\x02")
        .global("collections", "OrderedDict")
        .op(b")R(");
    body.s("a")
        .tensor("FloatStorage", "s0", 8, Some(("v0", 2, 5)), 1, &[2], &[2]);
    body.s("b")
        .tensor("FloatStorage", "s0", 8, None, 0, &[2, 2], &[1, 2]);
    body.op(b"u.");
    for little in [true, false] {
        let data: Vec<u8> = (0..8)
            .flat_map(|v| {
                let x = v as f32;
                if little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                }
            })
            .collect();
        let f = legacy_file(little, &body.0, &["s0"], &[(8, data)]);
        let mut c = load(f).unwrap();
        assert_eq!(c.format, Format::Legacy);
        assert_eq!(f32s(&c.tensor_bytes(0).unwrap()), vec![3.0, 5.0]);
        assert_eq!(f32s(&c.tensor_bytes(1).unwrap()), vec![0.0, 2.0, 1.0, 3.0]);
    }
}

#[test]
fn legacy_errors_name_the_problem() {
    // unsupported dtype: the error names the key
    let mut body = P::default();
    body.op(b"\x80\x02}(");
    body.s("c")
        .tensor("ComplexFloatStorage", "s0", 2, None, 0, &[2], &[1]);
    body.op(b"u.");
    let f = legacy_file(true, &body.0, &["s0"], &[(2, vec![0; 16])]);
    let e = load(f).unwrap_err().to_string();
    assert!(
        e.contains("tensor `c`") && e.contains("ComplexFloatStorage"),
        "{e}"
    );

    // a view reaching past its storage
    let mut body = P::default();
    body.op(b"\x80\x02}(");
    body.s("w")
        .tensor("FloatStorage", "s0", 4, None, 2, &[3], &[1]);
    body.op(b"u.");
    let f = legacy_file(true, &body.0, &["s0"], &[(4, vec![0; 16])]);
    let e = load(f).unwrap_err().to_string();
    assert!(
        e.contains("tensor `w`") && e.contains("beyond its storage"),
        "{e}"
    );

    // an element count in the file that disagrees with the pickle
    let mut body = P::default();
    body.op(b"\x80\x02}(");
    body.s("w")
        .tensor("FloatStorage", "s0", 4, None, 0, &[4], &[1]);
    body.op(b"u.");
    let f = legacy_file(true, &body.0, &["s0"], &[(3, vec![0; 12])]);
    let e = load(f).unwrap_err().to_string();
    assert!(e.contains("holds 3 elements"), "{e}");

    // a huge expanded view is refused instead of allocating terabytes
    let mut body = P::default();
    body.op(b"\x80\x02}(");
    body.s("x").tensor(
        "FloatStorage",
        "s0",
        1,
        None,
        0,
        &[1 << 30, 1 << 30],
        &[0, 0],
    );
    body.op(b"u.");
    let f = legacy_file(true, &body.0, &["s0"], &[(1, vec![0; 4])]);
    let e = load(f).unwrap_err().to_string();
    assert!(e.contains("expanded view"), "{e}");
}

// ------------------------------------------------------------------------- key maps

#[test]
fn key_map_reports_differences() {
    let c = load(read(&fixture("f32.pt"))).unwrap();
    let r = keymap::check(KeyMap::Usrnet, &c.tensors);
    assert_eq!(r.missing.len(), 42);
    assert_eq!(r.unexpected.len(), c.tensors.len());
    assert!(!r.is_clean());
    let r = keymap::check(KeyMap::None, &c.tensors);
    assert!(r.is_clean());

    // mis-shaped and dtype problems, using a renamed f32 tensor
    let mut t = c.tensors.clone();
    t.retain(|t| t.name == "conv.weight" || t.name == "bn.num_batches_tracked");
    t[0].name = "p.m_head.weight".into(); // expected [16, 4, 3, 3], found [5, 3, 3, 3]
    t[1].name = "h.mlp.0.bias".into(); // expected [32] F32, found [] I64
    let r = keymap::check(KeyMap::Usrnet, &t);
    assert_eq!(r.misshaped.len(), 2);
    assert_eq!(r.misshaped[0].1, vec![16, 4, 3, 3]);
    assert_eq!(r.misshaped[0].2, vec![5, 3, 3, 3]);
    assert_eq!(r.not_f32.len(), 1);
    assert_eq!(r.missing.len(), 40);
    let text = r.render();
    assert!(
        text.contains("mis-shaped  p.m_head.weight  expected [16, 4, 3, 3], found [5, 3, 3, 3]"),
        "{text}"
    );
}

// ------------------------------------------------------------------------- CLI

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dkp-convert-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cli(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dkp-convert"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_converts_refuses_and_is_strict() {
    let d = tmpdir("cli");
    let out = d.join("f32.safetensors");
    let o = cli(&[&fixture("f32.pt"), &out]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tensors(&read(&out), &read(&fixture("f32.safetensors")), "cli f32");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temp file left behind: {names:?}");

    // hostile: exit 1, clean message, nothing written
    let bad = d.join("bad.safetensors");
    let o = cli(&[&fixture("hostile_system.pt"), &bad]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to load: the pickle references global `posix.system`"),
        "{err}"
    );
    assert!(!bad.exists());

    // --strict against the wrong map: exit 2, nothing written
    let o = cli(&[
        &fixture("f32.pt"),
        &bad,
        Path::new("--map"),
        Path::new("usrnet"),
        Path::new("--strict"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("missing     p.m_head.weight  expected [16, 4, 3, 3]")
    );
    assert!(!bad.exists());

    // without --strict a partial match is reported and the file written (here the six `h.`
    // keys are renamed by --strip-prefix; the other 36 still match)
    let o = cli(&[
        &usrnet_pth(),
        &bad,
        Path::new("--map"),
        Path::new("usrnet"),
        Path::new("--strip-prefix"),
        Path::new("h."),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}");
    assert!(stdout.contains("36/42 expected keys"), "{stdout}");
    assert!(bad.exists());

    // never overwrites the input
    let input = d.join("in.pt");
    std::fs::copy(fixture("f32.pt"), &input).unwrap();
    let o = cli(&[&input, &input]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
    assert_eq!(read(&input), read(&fixture("f32.pt")));

    // --f16
    let h = d.join("h.safetensors");
    let o = cli(&[&fixture("f32.pt"), &h, Path::new("--f16")]);
    assert!(o.status.success());
    assert_same_tensors(
        &read(&h),
        &read(&fixture("f32_as_f16.safetensors")),
        "cli --f16",
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cli_usrnet_strict() {
    let pth = usrnet_pth();
    let d = tmpdir("usrnet");
    let out = d.join("usrnet_tiny.safetensors");
    let o = cli(&[
        &pth,
        &out,
        Path::new("--map"),
        Path::new("usrnet"),
        Path::new("--strict"),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("42/42 expected keys"), "{stdout}");
    let st = usrnet_safetensors();
    assert_same_tensors(&read(&out), &read(&st), "cli usrnet");
    let _ = std::fs::remove_dir_all(&d);
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_refuses_to_replace_an_existing_output_without_force() {
    let d = tmpdir("force");
    let out = d.join("out.safetensors");
    std::fs::write(&out, b"precious").unwrap();

    // refused, naming the path and the flag; the file is untouched
    let o = cli(&[&fixture("f32.pt"), &out]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr_of(&o);
    assert!(
        err.contains(&out.display().to_string()) && err.contains("use --force"),
        "{err}"
    );
    assert_eq!(read(&out), b"precious");

    // the check comes before the input is parsed: a hostile input is not even looked at
    let o = cli(&[&fixture("hostile_system.pt"), &out]);
    let err = stderr_of(&o);
    assert!(
        err.contains("use --force") && !err.contains("posix.system"),
        "{err}"
    );
    assert_eq!(read(&out), b"precious");

    // --dry-run writes nothing, so it does not refuse
    let o = cli(&[&fixture("f32.pt"), &out, Path::new("--dry-run")]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(read(&out), b"precious");

    // --force replaces it
    let o = cli(&[&fixture("f32.pt"), &out, Path::new("--force")]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_same_tensors(&read(&out), &read(&fixture("f32.safetensors")), "--force");

    // ... but never the input itself
    let input = d.join("in.pt");
    std::fs::copy(fixture("f32.pt"), &input).unwrap();
    let o = cli(&[&input, &input, Path::new("--force")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("refusing to overwrite the input"));
    assert_eq!(read(&input), read(&fixture("f32.pt")));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cli_missing_output_folder_is_named_before_parsing() {
    let d = tmpdir("nodir");
    let out = d.join("nodir/x.safetensors");
    // a hostile input: the folder problem must be reported first, without parsing
    for input in [fixture("f32.pt"), fixture("hostile_system.pt")] {
        let o = cli(&[&input, &out]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr_of(&o);
        assert!(
            err.contains(&d.join("nodir").display().to_string())
                && err.contains("does not exist")
                && !err.contains("posix.system"),
            "{err}"
        );
        assert!(err.matches("os error").count() <= 1, "{err}");
    }
    // the parent is a file, not a folder
    let file = d.join("file");
    std::fs::write(&file, b"x").unwrap();
    let o = cli(&[&fixture("f32.pt"), &file.join("x.safetensors")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr_of(&o);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("not a folder"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cli_missing_input_is_named_once() {
    let d = tmpdir("noinput");
    let input = d.join("missing.pth");
    let out = d.join("x.safetensors");
    let o = cli(&[&input, &out]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr_of(&o);
    assert!(
        err.contains(&input.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.matches("os error").count() <= 1, "{err}");
    // a folder given as the input
    let o = cli(&[&d, &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("is a folder"), "{}", stderr_of(&o));
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn io_errors_name_the_path_and_print_each_cause_once() {
    let d = tmpdir("ioerr");
    let input = fixture("f32.pt");
    let mut c = Checkpoint::open(&input, &LoadOptions::default()).unwrap();
    let out = d.join("nodir/x.safetensors");
    let e = dkp_convert::write_safetensors_file(&mut c, &input, &out, &WriteOptions::default())
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(
        chain.contains("cannot create")
            && chain.contains(
                &d.join("nodir")
                    .join(".x.safetensors.tmp")
                    .display()
                    .to_string()
            )
            && chain.contains("does not exist"),
        "{chain}"
    );
    assert!(chain.matches("os error").count() <= 1, "{chain}");

    let missing = d.join("missing.pt");
    let e = Checkpoint::open(&missing, &LoadOptions::default()).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(chain.contains(&missing.display().to_string()), "{chain}");
    assert_eq!(chain.matches("os error").count(), 1, "{chain}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Sets the compression method of the zip entries whose name ends with `suffix`, in the local
/// and the central headers (the data stays as it is: only the refusal is exercised).
fn zip_set_method(f: &mut [u8], suffix: &str, method: u16) -> usize {
    let u16_at = |f: &[u8], i: usize| u16::from_le_bytes([f[i], f[i + 1]]) as usize;
    let u32_at = |f: &[u8], i: usize| u32::from_le_bytes(f[i..i + 4].try_into().unwrap()) as usize;
    let eocd = f.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    let (entries, mut at) = (u16_at(f, eocd + 10), u32_at(f, eocd + 16));
    let mut patched = 0;
    for _ in 0..entries {
        assert_eq!(&f[at..at + 4], b"PK\x01\x02");
        let (n, x, c) = (u16_at(f, at + 28), u16_at(f, at + 30), u16_at(f, at + 32));
        let local = u32_at(f, at + 42);
        if f[at + 46..at + 46 + n].ends_with(suffix.as_bytes()) {
            f[at + 10..at + 12].copy_from_slice(&method.to_le_bytes());
            assert_eq!(&f[local..local + 4], b"PK\x03\x04");
            f[local + 8..local + 10].copy_from_slice(&method.to_le_bytes());
            patched += 1;
        }
        at += 46 + n + x + c;
    }
    patched
}

#[test]
fn deflated_zip_entries_are_explained() {
    for entry in ["/data/3", "/data.pkl"] {
        let mut f = read(&fixture("f32.pt"));
        assert_eq!(zip_set_method(&mut f, entry, 8), 1);
        let e = load(f).unwrap_err().to_string();
        assert!(
            e.contains(&format!("f32{entry}"))
                && e.contains("Deflate")
                && e.contains("STORED")
                && e.contains("torch.save")
                && !e.contains("not supported: 8"),
            "{entry}: {e}"
        );
    }
}

/// A legacy file whose state dict is built by `body` (after `\x80\x02`), with one 4-element
/// f32 storage `s0` = [0, 1, 2, 3].
fn legacy_with(body: impl FnOnce(&mut P)) -> Vec<u8> {
    let mut p = P::default();
    p.op(b"\x80\x02");
    body(&mut p);
    p.op(b".");
    let data: Vec<u8> = (0..4).flat_map(|v| (v as f32).to_le_bytes()).collect();
    legacy_file(true, &p.0, &["s0"], &[(4, data)])
}

#[test]
fn self_referencing_dict_is_refused() {
    // d = {"w": tensor, "a": {"b": d}}
    let f = legacy_with(|p| {
        p.op(b"}q\x00(").s("w");
        p.tensor("FloatStorage", "s0", 4, None, 0, &[4], &[1]);
        p.s("a").op(b"}(").s("b").op(b"h\x00u");
        p.op(b"u");
    });
    let e = load(f).unwrap_err().to_string();
    assert!(e.contains("contains itself at key a/b"), "{e}");
}

#[test]
fn shared_references_are_not_cycles() {
    // {"w": t, "w2": t, "sub": {"x": t}, "sub2": <the same dict as sub>}
    let f = legacy_with(|p| {
        p.op(b"}(").s("w");
        p.tensor("FloatStorage", "s0", 4, None, 0, &[4], &[1]);
        p.op(b"q\x01").s("w2").op(b"h\x01");
        p.s("sub").op(b"}q\x02(").s("x").op(b"h\x01u");
        p.s("sub2").op(b"h\x02");
        p.op(b"u");
    });
    let mut c = load(f).unwrap();
    let names: Vec<_> = c.tensors.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["w", "w2", "sub.x", "sub2.x"]);
    for i in 0..4 {
        assert_eq!(f32s(&c.tensor_bytes(i).unwrap()), vec![0.0, 1.0, 2.0, 3.0]);
    }
}

#[test]
fn cli_map_with_no_matching_key_refuses() {
    let d = tmpdir("nomatch");
    let (input, out) = (fixture("f32.pt"), d.join("x.safetensors"));
    for extra in [None, Some("--dry-run")] {
        let mut args: Vec<&Path> = vec![&input, &out, Path::new("--map"), Path::new("usrnet")];
        if let Some(x) = extra {
            args.push(Path::new(x));
        }
        let o = cli(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = stderr_of(&o);
        assert!(
            err.contains("0 of 42")
                && err.contains("conv.weight")
                && err.contains("p.m_head.weight")
                && err.contains("--key")
                && err.contains("--strip-prefix")
                && err.contains("--map none"),
            "{err}"
        );
        assert!(!out.exists());
    }
    let _ = std::fs::remove_dir_all(&d);
}
