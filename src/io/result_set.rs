//! Result sets written as a whole or not at all.
//!
//! A run writes several files per image (`NAME_sr.png`, kernels, plots, `NAME_report.json`).
//! Written one by one into the output folder, an interrupted run (Ctrl-C, a crash, a full disk)
//! would leave a new image beside an old report that names another seed. Instead every file
//! goes into a hidden staging folder beside the target (`.NAME.partial-PID-N`, same file
//! system, so moves are renames), and [`ResultSet::commit`] moves the complete set into place,
//! removing whatever the set's older version held that the new one does not, and moving the
//! report (the set's manifest) last. A set counts as complete when its report exists; a staging
//! folder left by a killed process is hidden, never read as results, and removed by the next
//! run for the same name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::file_err;
use crate::error::Result;

/// Files of one image's results, staged until [`ResultSet::commit`].
pub struct ResultSet {
    dir: PathBuf,
    name: String,
    staging: PathBuf,
    /// File names (without the folder) staged so far, in the order they were asked for.
    files: Vec<String>,
    committed: bool,
}

/// `NAME_SUFFIX`: the file name a set member gets in the output folder.
pub fn member_name(name: &str, suffix: &str) -> String {
    format!("{name}_{suffix}")
}

/// The members of `name`'s set in `dir` that exist now, among `suffixes`.
pub fn existing_members(dir: &Path, name: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    suffixes
        .iter()
        .map(|s| dir.join(member_name(name, s)))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

impl ResultSet {
    /// Start a set for image `name` in `dir` (which must exist). Stale staging folders of
    /// `name` from processes that no longer run are removed first.
    pub fn begin(dir: &Path, name: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        remove_stale_staging(dir, name);
        let staging = dir.join(format!(
            ".{name}.partial-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&staging)
            .map_err(|e| file_err(&staging, format!("cannot create the staging folder: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            staging,
            files: Vec::new(),
            committed: false,
        })
    }

    /// Where to write the member `NAME_SUFFIX` now (inside the staging folder).
    pub fn path(&mut self, suffix: &str) -> PathBuf {
        let file = member_name(&self.name, suffix);
        if !self.files.contains(&file) {
            self.files.push(file.clone());
        }
        self.staging.join(file)
    }

    /// Where `NAME_SUFFIX` will be once the set is committed (for reports that list outputs).
    pub fn final_path(&self, suffix: &str) -> PathBuf {
        self.dir.join(member_name(&self.name, suffix))
    }

    /// Move the staged files into the output folder. Members of an older set (any of
    /// `all_suffixes`) that the new set does not contain are removed first, so the folder
    /// never holds a mix; `manifest` (the report suffix) moves last. Returns the final paths.
    pub fn commit(mut self, all_suffixes: &[&str], manifest: &str) -> Result<Vec<PathBuf>> {
        let manifest = member_name(&self.name, manifest);
        // The old report goes first: from here on the old set no longer counts as complete.
        let old_manifest = self.dir.join(&manifest);
        if old_manifest.exists() {
            std::fs::remove_file(&old_manifest)
                .map_err(|e| file_err(&old_manifest, format!("cannot remove: {e}")))?;
        }
        for s in all_suffixes {
            let file = member_name(&self.name, s);
            let p = self.dir.join(&file);
            if !self.files.contains(&file) && p.symlink_metadata().is_ok() {
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(|e| file_err(&p, format!("cannot remove the older result: {e}")))?;
            }
        }
        let mut order: Vec<&String> = self.files.iter().filter(|f| **f != manifest).collect();
        if self.files.contains(&manifest) {
            order.push(&manifest);
        }
        let mut out = Vec::new();
        for f in order {
            let (from, to) = (self.staging.join(f), self.dir.join(f));
            if !from.exists() {
                // Asked for a path but never wrote it (an optional output): nothing to move.
                continue;
            }
            if to.is_dir() {
                std::fs::remove_dir_all(&to)
                    .map_err(|e| file_err(&to, format!("cannot replace the folder: {e}")))?;
            }
            std::fs::rename(&from, &to)
                .map_err(|e| file_err(&to, format!("cannot move the result into place: {e}")))?;
            out.push(to);
        }
        self.committed = true;
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(out)
    }
}

impl Drop for ResultSet {
    /// An uncommitted set (an error, an interrupt) leaves the output folder as it was.
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Remove `.NAME.partial-PID-N` folders whose process is gone (Linux: no `/proc/PID`). On other
/// systems, where that cannot be told, they are left alone: they are hidden and never read.
fn remove_stale_staging(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.partial-");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let proc_root = Path::new("/proc");
        if pid != std::process::id()
            && proc_root.join("self").exists()
            && !proc_root.join(pid.to_string()).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Fail now, before any work, when `dir` cannot take new files (read-only, not a folder, no
/// permission): a probe file is created and removed.
pub fn check_writable(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(file_err(dir, "is not a folder"));
    }
    let probe = dir.join(format!(".dkp-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(file_err(
            dir,
            format!("the output folder is not writable ({e}); choose another --out"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 3] = ["sr.png", "extra.png", "report.json"];

    fn write(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn commit_replaces_the_whole_set_and_drops_members_the_new_set_lacks() {
        let d = tempfile::tempdir().unwrap();
        for s in ALL {
            write(&d.path().join(member_name("a", s)), "old");
        }
        write(&d.path().join("b_sr.png"), "other image");
        let mut set = ResultSet::begin(d.path(), "a").unwrap();
        write(&set.path("sr.png"), "new");
        write(&set.path("report.json"), "new");
        let out = set.commit(&ALL, "report.json").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            std::fs::read_to_string(d.path().join("a_sr.png")).unwrap(),
            "new"
        );
        assert!(!d.path().join("a_extra.png").exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("b_sr.png")).unwrap(),
            "other image"
        );
        // Nothing but the results is left behind.
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_uncommitted_set_leaves_the_old_one_intact() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("a_sr.png"), "old");
        write(&d.path().join("a_report.json"), "old");
        {
            let mut set = ResultSet::begin(d.path(), "a").unwrap();
            write(&set.path("sr.png"), "new");
            // dropped: an error or an interrupt before commit
        }
        assert_eq!(
            std::fs::read_to_string(d.path().join("a_sr.png")).unwrap(),
            "old"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn stale_staging_of_dead_processes_is_removed() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        // PIDs are below 2^22 on Linux: this one cannot be running.
        let stale = d.path().join(".a.partial-4294967290-0");
        std::fs::create_dir(&stale).unwrap();
        let set = ResultSet::begin(d.path(), "a").unwrap();
        assert!(!stale.exists());
        drop(set);
    }

    #[test]
    fn a_read_only_folder_is_refused_up_front() {
        let d = tempfile::tempdir().unwrap();
        check_writable(d.path()).unwrap();
        assert!(check_writable(&d.path().join("missing")).is_err());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = d.path().join("x");
        // Root ignores permissions: only check the refusal where the OS enforces it.
        if std::fs::File::create(&probe).is_err() {
            let e = check_writable(d.path()).unwrap_err().to_string();
            assert!(e.contains("not writable"), "{e}");
        }
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
