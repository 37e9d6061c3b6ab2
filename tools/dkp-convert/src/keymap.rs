//! Expected key/shape lists of the checkpoints dkp uses (copied from the spec's
//! `checkpoint_keys/*.txt`, embedded so the binary stands alone) and the comparison report.
//!
//! The dkp model code uses the PyTorch state-dict names unchanged, so a map renames nothing: it
//! only validates names, shapes and dtypes after wrapper/prefix removal.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::dtype::DType;
use crate::torch::TensorEntry;

/// Which model a checkpoint must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMap {
    /// guided-diffusion `256x256_diffusion.pt` (567 tensors).
    Unet,
    /// `usrnet_tiny.pth` (42 tensors).
    Usrnet,
    /// guided-diffusion `256x256_classifier.pt` (249 tensors).
    Classifier,
    /// No check; names kept as they are.
    None,
}

impl KeyMap {
    pub fn parse(s: &str) -> Option<KeyMap> {
        Some(match s {
            "unet" => KeyMap::Unet,
            "usrnet" => KeyMap::Usrnet,
            "classifier" => KeyMap::Classifier,
            "none" => KeyMap::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyMap::Unet => "unet",
            KeyMap::Usrnet => "usrnet",
            KeyMap::Classifier => "classifier",
            KeyMap::None => "none",
        }
    }

    fn list(self) -> Option<&'static str> {
        match self {
            KeyMap::Unet => Some(include_str!("../keys/unet_256x256_diffusion_keys.txt")),
            KeyMap::Usrnet => Some(include_str!("../keys/usrnet_tiny_keys.txt")),
            KeyMap::Classifier => Some(include_str!("../keys/classifier_256x256_keys.txt")),
            KeyMap::None => None,
        }
    }

    /// The expected `(name, shape)` list in state-dict order; empty for [`KeyMap::None`].
    pub fn expected(self) -> Vec<(String, Vec<usize>)> {
        self.list().map(parse_key_list).unwrap_or_default()
    }
}

/// Parses lines `name [d0, d1, ...]`; `#` starts a comment line.
pub fn parse_key_list(text: &str) -> Vec<(String, Vec<usize>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let open = l.rfind(" [")?;
            let name = l[..open].trim().to_string();
            let inner = l[open + 2..].trim_end().strip_suffix(']')?;
            let shape = inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().ok())
                .collect::<Option<Vec<usize>>>()?;
            Some((name, shape))
        })
        .collect()
}

/// Differences between a checkpoint and a key map.
#[derive(Debug, Default)]
pub struct Report {
    pub map: &'static str,
    pub expected: usize,
    pub matched: usize,
    /// Expected but absent: (name, expected shape).
    pub missing: Vec<(String, Vec<usize>)>,
    /// Present but not expected: (name, found shape).
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// (name, expected shape, found shape).
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Expected keys whose stored dtype is not F32 (the spec's checkpoints are FloatStorage).
    pub not_f32: Vec<(String, DType)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }

    /// True when the map expects keys and not one of them is present with the right shape:
    /// the file is not (this part of) the model the map describes.
    pub fn nothing_matched(&self) -> bool {
        self.expected > 0 && self.matched == 0
    }

    pub fn problems(&self) -> usize {
        self.missing.len() + self.unexpected.len() + self.misshaped.len() + self.not_f32.len()
    }

    /// Multi-line human-readable summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "key map `{}`: {}/{} expected keys present with the right shape; {} missing, \
             {} unexpected, {} mis-shaped, {} not F32",
            self.map,
            self.matched,
            self.expected,
            self.missing.len(),
            self.unexpected.len(),
            self.misshaped.len(),
            self.not_f32.len()
        );
        for (n, e) in &self.missing {
            let _ = writeln!(s, "  missing     {n}  expected {e:?}");
        }
        for (n, f) in &self.unexpected {
            let _ = writeln!(s, "  unexpected  {n}  found {f:?}");
        }
        for (n, e, f) in &self.misshaped {
            let _ = writeln!(s, "  mis-shaped  {n}  expected {e:?}, found {f:?}");
        }
        for (n, d) in &self.not_f32 {
            let _ = writeln!(s, "  dtype       {n}  expected F32, found {d}");
        }
        s
    }
}

/// Compares the tensors against the map's list.
pub fn check(map: KeyMap, tensors: &[TensorEntry]) -> Report {
    let expected = map.expected();
    let found: HashMap<&str, &TensorEntry> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut r = Report {
        map: map.name(),
        expected: expected.len(),
        ..Report::default()
    };
    if map == KeyMap::None {
        return r;
    }
    let mut known = std::collections::HashSet::new();
    for (name, shape) in &expected {
        known.insert(name.as_str());
        match found.get(name.as_str()) {
            None => r.missing.push((name.clone(), shape.clone())),
            Some(t) => {
                if &t.shape != shape {
                    r.misshaped
                        .push((name.clone(), shape.clone(), t.shape.clone()));
                } else {
                    r.matched += 1;
                }
                if t.dtype != DType::F32 {
                    r.not_f32.push((name.clone(), t.dtype));
                }
            }
        }
    }
    for t in tensors {
        if !known.contains(t.name.as_str()) {
            r.unexpected.push((t.name.clone(), t.shape.clone()));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(m: KeyMap) -> (usize, usize) {
        let e = m.expected();
        (
            e.len(),
            e.iter().map(|(_, s)| s.iter().product::<usize>()).sum(),
        )
    }

    #[test]
    fn embedded_lists_match_the_spec_totals() {
        assert_eq!(totals(KeyMap::Usrnet), (42, 590_332));
        assert_eq!(totals(KeyMap::Unet), (567, 553_838_086));
        assert_eq!(totals(KeyMap::Classifier), (249, 54_096_360));
        assert!(KeyMap::None.expected().is_empty());
    }

    #[test]
    fn parse_lines() {
        let l = parse_key_list("# c\na.b [2, 3]\nscalar []\n\nbad line\n");
        assert_eq!(
            l,
            vec![("a.b".into(), vec![2, 3]), ("scalar".into(), vec![])]
        );
    }
}
