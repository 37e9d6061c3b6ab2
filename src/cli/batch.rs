//! Splitting a folder run over the tasks of a job array (`--shard I/N`, Slurm, Kubernetes
//! Indexed Jobs), and resuming one (`--skip-existing`).

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Clone, Debug, Default)]
pub struct BatchArgs {
    /// Run only part I of N of a folder (I from 1 to N): images are dealt out by sorted name,
    /// the first to part 1, the second to part 2, ... Default: from SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT, or from a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with
    /// --shard-count.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The number of parts when the part comes from JOB_COMPLETION_INDEX (the Job's
    /// `completions`); also read from DKP_SHARD_COUNT.
    #[arg(long = "shard-count", value_name = "N")]
    pub shard_count: Option<usize>,
    /// Resume a batch: images whose result set is complete in the output folder are not run
    /// again (a set is complete once its report is in place); their results stay as they are.
    #[arg(long = "skip-existing")]
    pub skip_existing: bool,
}

/// Part `index` (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `I/N` with 1 <= I <= N.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || anyhow::anyhow!("--shard {s:?}: expected I/N with 1 <= I <= N, e.g. 2/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if i == 0 || i > n {
            return Err(bad());
        }
        Ok(Self {
            index: i - 1,
            count: n,
        })
    }

    /// The part a job array assigns to this process, and where it came from; `None` outside
    /// a job array.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        count_flag: Option<usize>,
    ) -> Result<Option<(Self, String)>> {
        let num = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    anyhow::anyhow!("{name}={v:?}: expected a whole number (set by the scheduler)")
                }),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let Some(count) = num("SLURM_ARRAY_TASK_COUNT")? else {
                bail!(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give --shard I/N"
                );
            };
            // Arrays may start at any number (--array=1-8); tasks are numbered from the minimum.
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).filter(|&i| i < count).ok_or_else(|| {
                anyhow::anyhow!(
                    "SLURM_ARRAY_TASK_ID={id} is outside the array (minimum {min}, {count} tasks); arrays with a step (--array=0-9:2) need an explicit --shard I/N"
                )
            })?;
            return Ok(Some((
                Self { index, count },
                format!("SLURM_ARRAY_TASK_ID={id}"),
            )));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let Some(count) = count_flag.or(num("DKP_SHARD_COUNT")?) else {
                bail!(
                    "JOB_COMPLETION_INDEX={index} is set (a Kubernetes Indexed Job): give the number of completions with --shard-count N"
                );
            };
            if count == 0 || index >= count {
                bail!(
                    "JOB_COMPLETION_INDEX={index} with --shard-count {count}: the index must be below the count"
                );
            }
            return Ok(Some((
                Self { index, count },
                format!("JOB_COMPLETION_INDEX={index}"),
            )));
        }
        Ok(None)
    }

    /// This part's items of a list in batch order: every `count`-th, starting at `index`, so
    /// parts differ by at most one image and the partition depends only on the sorted names.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, x)| x)
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl BatchArgs {
    /// The part to run: `--shard`, else the job array's, else everything. Only folders are
    /// split; a single input under a job array runs whole.
    pub fn shard(&self, folder: bool) -> Result<Option<Shard>> {
        if let Some(s) = &self.shard {
            if !folder {
                bail!("--shard splits a folder of inputs; the input is a single image");
            }
            return Ok(Some(Shard::parse(s)?));
        }
        if let Some(0) = self.shard_count {
            bail!("--shard-count must be at least 1");
        }
        if !folder {
            return Ok(None);
        }
        let found = Shard::from_env(|k| std::env::var(k).ok(), self.shard_count)?;
        if let Some((s, from)) = &found {
            eprintln!("note: running part {s} of the folder ({from})");
        }
        Ok(found.map(|(s, _)| s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parse_accepts_one_based_parts_only() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 1, count: 3 });
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_cover_the_list_once() {
        let items: Vec<usize> = (0..10).collect();
        let mut all: Vec<usize> = (0..3)
            .flat_map(|i| Shard { index: i, count: 3 }.select(items.clone()))
            .collect();
        all.sort();
        assert_eq!(all, items);
        assert_eq!(Shard { index: 1, count: 3 }.select(items), vec![1, 4, 7]);
    }

    #[test]
    fn job_arrays_give_the_part() {
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
        ];
        let (s, _) = Shard::from_env(env(&slurm), None).unwrap().unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        let outside = [
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert!(Shard::from_env(env(&outside), None).is_err());
        let k8s = [("JOB_COMPLETION_INDEX", "0")];
        assert!(Shard::from_env(env(&k8s), None).is_err(), "count needed");
        let (s, _) = Shard::from_env(env(&k8s), Some(2)).unwrap().unwrap();
        assert_eq!(s, Shard { index: 0, count: 2 });
        let with_env = [("JOB_COMPLETION_INDEX", "1"), ("DKP_SHARD_COUNT", "2")];
        let (s, _) = Shard::from_env(env(&with_env), None).unwrap().unwrap();
        assert_eq!(s, Shard { index: 1, count: 2 });
        assert!(Shard::from_env(env(&[]), None).unwrap().is_none());
    }
}
