//! The per-folder table of a `dkp dip` batch (`summary.csv`, `summary.json`): one row per
//! image, mean ± std over its runs (seeds), rebuilt from the complete result sets in the
//! folder, so shards, resumed batches and `--runs` all end in the same table; and the merge
//! of several folders' tables (`dkp eval --merge`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

/// What a report says the tables are about (other tools' JSON files in the folder are ignored).
pub const METHOD: &str = "dip-dkp";

/// One run of one image, as its report has it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunRow {
    pub image: String,
    /// The result set's name (`image`, or `image_sSEED` with `--runs`).
    pub set: String,
    pub seed: u64,
    pub sf: usize,
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub kernel_psnr: Option<f64>,
    /// LR re-degradation PSNR of the output with its kernel (needs no ground truth).
    pub lr_psnr: Option<f64>,
    pub seconds: f64,
    pub adapter: String,
    /// Which output was written (`ema` or `last`).
    pub mode: String,
    pub preset: String,
}

/// Means (or standard deviations) of the scores; `None` where no run has the value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub kernel_psnr: Option<f64>,
    pub lr_psnr: Option<f64>,
    pub seconds: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ImageSummary {
    pub image: String,
    pub runs: Vec<RunRow>,
    pub mean: Stats,
    /// Sample standard deviation over the runs (`None` with a single run).
    pub std: Stats,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Summary {
    pub count: usize,
    pub images: Vec<ImageSummary>,
    /// Mean over images of the per-image means.
    pub mean: Stats,
}

fn mean_std(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s =
        (v.len() > 1).then(|| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(m), s)
}

fn stats<T>(items: &[T], get: impl Fn(&T) -> Stats) -> (Stats, Stats) {
    let col = |f: &dyn Fn(&Stats) -> Option<f64>| -> (Option<f64>, Option<f64>) {
        let v: Vec<f64> = items
            .iter()
            .filter_map(|x| f(&get(x)))
            .filter(|x| x.is_finite())
            .collect();
        mean_std(&v)
    };
    let (p, ps) = col(&|s| s.psnr);
    let (q, qs) = col(&|s| s.ssim);
    let (k, ks) = col(&|s| s.kernel_psnr);
    let (l, ls) = col(&|s| s.lr_psnr);
    let (t, ts) = col(&|s| s.seconds);
    (
        Stats {
            psnr: p,
            ssim: q,
            kernel_psnr: k,
            lr_psnr: l,
            seconds: t,
        },
        Stats {
            psnr: ps,
            ssim: qs,
            kernel_psnr: ks,
            lr_psnr: ls,
            seconds: ts,
        },
    )
}

impl RunRow {
    fn scores(&self) -> Stats {
        Stats {
            psnr: self.psnr,
            ssim: self.ssim,
            kernel_psnr: self.kernel_psnr,
            lr_psnr: self.lr_psnr,
            seconds: Some(self.seconds),
        }
    }

    /// The row of a `dkp dip` report; `None` for JSON files that are not one.
    fn from_report(v: &serde_json::Value) -> Option<Self> {
        if v.get("method")?.as_str()? != METHOD {
            return None;
        }
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
        Some(Self {
            image: s("image")?,
            set: s("set")?,
            seed: v.get("seed")?.as_u64()?,
            sf: v.get("sf")?.as_u64()? as usize,
            psnr: f("psnr"),
            ssim: f("ssim"),
            kernel_psnr: f("kernel_psnr"),
            lr_psnr: f("lr_psnr"),
            seconds: f("seconds")?,
            adapter: v.get("adapter")?.get("name")?.as_str()?.to_string(),
            mode: s("output")?,
            preset: s("preset")?,
        })
    }
}

impl Summary {
    /// Group runs by image (sorted by name; runs by seed). The same image and seed twice is
    /// refused: it would count one result twice.
    pub fn from_runs(mut runs: Vec<(RunRow, PathBuf)>) -> Result<Self> {
        runs.sort_by(|a, b| (&a.0.image, a.0.seed).cmp(&(&b.0.image, b.0.seed)));
        for w in runs.windows(2) {
            if (&w[0].0.image, w[0].0.seed) == (&w[1].0.image, w[1].0.seed) {
                bail!(
                    "{} (seed {}) is in both {} and {}: keep one of them",
                    w[0].0.image,
                    w[0].0.seed,
                    w[0].1.display(),
                    w[1].1.display()
                );
            }
        }
        if let Some(r) = runs.iter().find(|r| r.0.sf != runs[0].0.sf) {
            bail!(
                "{} is x{} but {} is x{}: a table holds one scale",
                r.1.display(),
                r.0.sf,
                runs[0].1.display(),
                runs[0].0.sf
            );
        }
        let mut by_image: BTreeMap<String, Vec<RunRow>> = BTreeMap::new();
        for (r, _) in runs {
            by_image.entry(r.image.clone()).or_default().push(r);
        }
        let images: Vec<ImageSummary> = by_image
            .into_iter()
            .map(|(image, runs)| {
                let (mean, std) = stats(&runs, RunRow::scores);
                ImageSummary {
                    image,
                    runs,
                    mean,
                    std,
                }
            })
            .collect();
        let (mean, _) = stats(&images, |i| i.mean);
        Ok(Self {
            count: images.len(),
            images,
            mean,
        })
    }

    /// The runs of every complete `dkp dip` set in `dir` (its reports are written last).
    pub fn scan(dir: &Path) -> Result<Self> {
        let mut runs = Vec::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        for e in entries {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with("_report.json") || name.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                log::warn!("{}: not JSON; left out of the summary", p.display());
                continue;
            };
            if let Some(r) = RunRow::from_report(&v) {
                runs.push((r, p));
            }
        }
        Self::from_runs(runs)
    }

    /// Merge the `summary.json` of several folders (e.g. one per shard).
    pub fn merge(dirs: &[PathBuf]) -> Result<Self> {
        let mut runs = Vec::new();
        for d in dirs {
            let p = d.join("summary.json");
            let text = std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "{}: no summary.json to merge (a `dkp dip` output folder has one)",
                    d.display()
                )
            })?;
            let s: Summary = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a dkp summary", p.display()))?;
            for i in s.images {
                runs.extend(i.runs.into_iter().map(|r| (r, d.clone())));
            }
        }
        Self::from_runs(runs)
    }

    /// `summary.csv` and `summary.json` in `dir`, each replaced atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        dkp::io::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        dkp::io::write_atomic(&dir.join("summary.csv"), self.csv().as_bytes())?;
        Ok(())
    }

    pub const CSV_HEADER: &'static str = "image,runs,seeds,psnr,psnr_std,ssim,ssim_std,kernel_psnr,kernel_psnr_std,lr_psnr,lr_psnr_std,seconds,sf,mode,preset,adapter";

    /// One row per image; scores are means over its runs, `_std` their sample deviation.
    pub fn csv(&self) -> String {
        let mut out = String::from(Self::CSV_HEADER);
        out.push('\n');
        let num = |v: Option<f64>, d: usize| v.map_or(String::new(), |x| format!("{x:.d$}"));
        let distinct = |f: &dyn Fn(&RunRow) -> &str, runs: &[RunRow]| {
            let mut v: Vec<&str> = runs.iter().map(f).collect();
            v.dedup();
            v.join(" ")
        };
        for i in &self.images {
            let seeds: Vec<String> = i.runs.iter().map(|r| r.seed.to_string()).collect();
            let fields = [
                csv_field(&i.image),
                i.runs.len().to_string(),
                seeds.join(" "),
                num(i.mean.psnr, 4),
                num(i.std.psnr, 4),
                num(i.mean.ssim, 5),
                num(i.std.ssim, 5),
                num(i.mean.kernel_psnr, 4),
                num(i.std.kernel_psnr, 4),
                num(i.mean.lr_psnr, 4),
                num(i.std.lr_psnr, 4),
                num(i.mean.seconds, 2),
                i.runs[0].sf.to_string(),
                csv_field(&distinct(&|r| &r.mode, &i.runs)),
                csv_field(&distinct(&|r| &r.preset, &i.runs)),
                csv_field(&distinct(&|r| &r.adapter, &i.runs)),
            ];
            out += &fields.join(",");
            out.push('\n');
        }
        out
    }

    /// A table for the terminal: mean ± std per image, then the mean over images.
    pub fn print(&self) {
        let w = self
            .images
            .iter()
            .map(|i| i.image.len())
            .max()
            .unwrap_or(5)
            .max(9);
        let pm = |m: Option<f64>, s: Option<f64>, d: usize| match (m, s) {
            (Some(m), Some(s)) => format!("{m:.d$} ± {s:.d$}"),
            (Some(m), None) => format!("{m:.d$}"),
            _ => "-".into(),
        };
        println!(
            "{:<w$}  {:>4}  {:>16}  {:>16}  {:>16}  {:>16}",
            "image", "runs", "PSNR", "SSIM", "kernel PSNR", "LR-fit PSNR"
        );
        for i in &self.images {
            println!(
                "{:<w$}  {:>4}  {:>16}  {:>16}  {:>16}  {:>16}",
                i.image,
                i.runs.len(),
                pm(i.mean.psnr, i.std.psnr, 2),
                pm(i.mean.ssim, i.std.ssim, 4),
                pm(i.mean.kernel_psnr, i.std.kernel_psnr, 2),
                pm(i.mean.lr_psnr, i.std.lr_psnr, 2),
            );
        }
        println!(
            "{:<w$}  {:>4}  {:>16}  {:>16}  {:>16}  {:>16}",
            format!("mean ({})", self.count),
            "",
            pm(self.mean.psnr, None, 2),
            pm(self.mean.ssim, None, 4),
            pm(self.mean.kernel_psnr, None, 2),
            pm(self.mean.lr_psnr, None, 2),
        );
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image: &str, seed: u64, psnr: f64) -> (RunRow, PathBuf) {
        (
            RunRow {
                image: image.into(),
                set: image.into(),
                seed,
                sf: 2,
                psnr: Some(psnr),
                ssim: None,
                kernel_psnr: None,
                lr_psnr: Some(40.0),
                seconds: 1.0,
                adapter: "a".into(),
                mode: "ema".into(),
                preset: "paper".into(),
            },
            PathBuf::from("d"),
        )
    }

    #[test]
    fn runs_of_an_image_give_mean_and_sample_std() {
        let s = Summary::from_runs(vec![
            row("b", 0, 30.0),
            row("a", 1, 20.0),
            row("a", 0, 22.0),
        ])
        .unwrap();
        assert_eq!(s.count, 2);
        let a = &s.images[0];
        assert_eq!((a.image.as_str(), a.runs.len()), ("a", 2));
        assert_eq!(a.runs[0].seed, 0);
        assert_eq!(a.mean.psnr, Some(21.0));
        assert!((a.std.psnr.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.images[1].std.psnr, None);
        assert_eq!(s.mean.psnr, Some(25.5));
        let csv = s.csv();
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("a,2,0 1,21.0000,1.4142,")
        );
    }

    #[test]
    fn the_same_run_twice_is_refused() {
        let e = Summary::from_runs(vec![row("a", 0, 1.0), row("a", 0, 1.0)]).unwrap_err();
        assert!(e.to_string().contains("in both"), "{e}");
    }

    #[test]
    fn csv_fields_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("ab"), "ab");
    }
}
