//! Every repository path that README, docs/ and the code's comments name exists,
//! so that a file moved without its mentions fails here instead of misleading a
//! reader.

use std::path::{Path, PathBuf};

const ROOTS: [&str; 7] = [
    "src/",
    "tests/",
    "testkit/",
    "bench/",
    "docs/",
    "migrations/",
    "config/",
];
const SCANNED: [&str; 5] = ["src", "tests", "testkit", "bench", "docs"];

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, found);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "md" | "py" | "pl")
        ) {
            found.push(path);
        }
    }
}

/// The path-like words of `text` that start at a repository folder: a file with
/// an extension, or a folder written with its trailing slash.
fn named_paths(text: &str) -> Vec<&str> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    text.split(|c: char| !is_path_char(c))
        .map(|word| word.trim_end_matches('.'))
        .filter(|word| ROOTS.iter().any(|root| word.starts_with(root)))
        .filter(|word| word.ends_with('/') || word.rsplit('/').next().unwrap().contains('.'))
        .collect()
}

#[test]
fn every_path_named_in_readme_docs_and_comments_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in SCANNED {
        files_under(&root.join(dir), &mut files);
    }
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for path in named_paths(&text) {
            if !root.join(path).exists() {
                missing.push(format!(
                    "{}: {path}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not there:\n{}",
        missing.join("\n")
    );
}

#[test]
fn path_words_are_found_where_prose_names_them() {
    assert_eq!(
        named_paths("see `src/store/sqlite/` and src/app.rs. (docs/smsgate-api.md §3)"),
        ["src/store/sqlite/", "src/app.rs", "docs/smsgate-api.md"]
    );
    assert_eq!(
        named_paths("bench/src/binds.rs, tests/it"),
        ["bench/src/binds.rs"]
    );
}
