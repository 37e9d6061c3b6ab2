//! The README's layout table names every top-level entry of `src/` and `tools/`, and every
//! path it names exists, so the map a newcomer reads first cannot drift from the tree.

use std::collections::BTreeSet;
use std::path::Path;

/// Backticked paths in the first column of the README's `## Layout` table.
fn layout_paths(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Layout")
        .expect("README has a ## Layout section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut paths = Vec::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                paths.push(part.to_string());
            }
        }
    }
    paths
}

#[test]
fn readme_layout_table_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let paths = layout_paths(&readme);
    assert!(paths.len() > 10, "layout table not found: {paths:?}");
    for p in &paths {
        assert!(
            root.join(p).exists(),
            "README layout names `{p}`, which does not exist"
        );
    }
    let named: BTreeSet<String> = paths
        .iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    for dir in ["src", "tools"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            let rel = format!("{dir}/{name}");
            assert!(
                named.contains(&rel),
                "`{rel}` is not in the README's layout table; add a row (or put it in one)"
            );
        }
    }
}
