//! Every document the repository cites is in the repository.
//!
//! Comments and docs point readers at documents (`docs/PROTOCOL.md Part 1`, "see
//! `docs/CLUSTER.md`"). A clone has only what is in the repository, so a citation of a file
//! that is not in it (a specification kept beside the checkout, a page that was renamed or
//! merged) leaves the reader with nothing. This test reads the repository's own sources and
//! docs (`*.rs`, `*.md`, `*.js`, `*.toml`; not `target/`, `node_modules/` or `vendor/`),
//! finds every `….md` it cites, and fails listing `file:line` for each citation that does
//! not name a file in the repository, and for every mention of the notes and the `shared`
//! directory that live outside it.
//!
//! How a citation is resolved:
//! - a path with a directory (`docs/CLUSTER.md`, `../README.md`) is taken from the
//!   repository's root or from the citing file's directory, and must stay inside the
//!   repository;
//! - a bare name (`README.md`) is looked for in the citing file's directory, each directory
//!   above it up to the root, and `docs/`;
//! - a `*` in a path stands for any one directory or name (`vendor/*/PATCHES.md`): at least
//!   one file must match;
//! - web addresses (`https://…/README.md`) are not the repository's and are skipped.
//!
//! It needs no relay: a bounded walk of the tree with std's fs.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// Directories never scanned: build output, installed packages, patched third-party crates
/// (their docs cite their own upstream files), and git's own.
const SKIPPED_DIRS: [&str; 4] = ["target", "node_modules", "vendor", ".git"];
/// The kinds of file scanned.
const SCANNED: [&str; 4] = ["rs", "md", "js", "toml"];
/// Bounds of the walk, far above the repository's size, so that a stray link loop or a
/// huge generated file cannot make the test run away.
const MAX_FILES: usize = 20_000;
const MAX_DEPTH: usize = 16;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Texts that always point outside the repository (the measurements kept beside the
/// checkout, and the directory that holds them).
const OUTSIDE: [&str; 2] = ["FIELD-NOTES", "shared/"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files to scan, relative paths from `root`, sorted.
fn sources(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_ref()) && depth < MAX_DEPTH {
                    dirs.push((path, depth + 1));
                }
            } else if kind.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| SCANNED.iter().any(|s| ext == *s))
            {
                assert!(
                    found.len() < MAX_FILES,
                    "more than {MAX_FILES} files to scan: is a skipped directory missing?"
                );
                found.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Characters a cited path is made of.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*' | '~')
}

/// The `….md` paths cited in one line.
fn cited_documents(line: &str) -> Vec<&str> {
    let mut cited = Vec::new();
    for (at, _) in line.match_indices(".md") {
        let end = at + 3;
        // `.mdx`, `.md5`, `foo.md_bar`: not a Markdown file.
        if line[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let start = line[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_path_char(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let path = &line[start..end];
        let web = path.starts_with("//") || line[..start].ends_with(':');
        if web || path == ".md" || path.starts_with("*.") || path.ends_with("/.md") {
            continue;
        }
        cited.push(path);
    }
    cited
}

/// `path` with `.` and `..` folded, or None if it climbs above its start.
fn normalized(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether `pattern` (relative to `root`, `*` standing for one whole name or part of one)
/// names at least one existing file.
fn exists(root: &Path, pattern: &Path) -> bool {
    let Some(pattern) = normalized(pattern) else {
        return false;
    };
    let parts: Vec<String> = pattern
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut here = vec![root.to_path_buf()];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &here {
            if part.contains('*') {
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if glob_match(part, &entry.file_name().to_string_lossy()) {
                        next.push(entry.path());
                    }
                }
            } else {
                next.push(dir.join(part));
            }
        }
        here = next
            .into_iter()
            .filter(|p| if last { p.is_file() } else { p.is_dir() })
            .collect();
        if here.is_empty() {
            return false;
        }
    }
    true
}

/// Shell-style match of one name, `*` matching any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len().min(name.len())).any(|skip| {
                    name.is_char_boundary(head.len() + skip)
                        && glob_match(tail, &name[head.len() + skip..])
                })
        }
    }
}

/// Whether the citation `cited`, made in the file `file` (relative to `root`), names a
/// file in the repository.
fn resolves(root: &Path, file: &Path, cited: &str) -> bool {
    let dir = file.parent().unwrap_or(Path::new(""));
    let cited = Path::new(cited);
    if cited.components().count() > 1 {
        return exists(root, cited) || exists(root, &dir.join(cited));
    }
    let mut candidates: Vec<PathBuf> = dir.ancestors().map(|d| d.join(cited)).collect();
    candidates.push(Path::new("docs").join(cited));
    candidates.iter().any(|c| exists(root, c))
}

/// Every broken citation in the tree under `root`, as `file:line: what`.
fn broken_citations(root: &Path) -> Vec<String> {
    let this_file = Path::new(file!());
    let mut broken = Vec::new();
    for file in sources(root) {
        // This file's own examples are broken citations on purpose.
        if file == this_file {
            continue;
        }
        let path = root.join(&file);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_FILE_BYTES {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue; // not UTF-8: no text to cite anything in
        };
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", file.display(), n + 1);
            for mark in OUTSIDE {
                if line.contains(mark) {
                    broken.push(format!(
                        "{at}: cites `{mark}`, which is outside the repository"
                    ));
                }
            }
            for cited in cited_documents(line) {
                if !resolves(root, &file, cited) {
                    broken.push(format!(
                        "{at}: cites `{cited}`, not a file in the repository"
                    ));
                }
            }
        }
    }
    broken
}

#[test]
fn every_cited_document_is_in_the_repository() {
    let broken = broken_citations(&root());
    assert!(
        broken.is_empty(),
        "{} citation(s) of documents that a clone does not have:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// The scanner itself, on a small tree of its own: a test that found nothing because it
/// looked at nothing would pass for the wrong reason.
#[test]
fn the_scanner_finds_what_is_missing_and_accepts_what_is_there() {
    let dir = std::env::temp_dir().join(format!("doc-references-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("docs")).unwrap();
    fs::create_dir_all(dir.join("crate/src")).unwrap();
    fs::create_dir_all(dir.join("vendor/x")).unwrap();
    fs::create_dir_all(dir.join("target")).unwrap();
    // The fixture spells `.md` as `{md}` and the folder beside a checkout as `{beside}`,
    // filled in as it is written, so that no scanner of this repository's own citations
    // (this file's first test among them) takes the fixture's made-up names for documents
    // this repository cites.
    let fill = |text: &str| {
        text.replace("{md}", ".md")
            .replace("{beside}", &["..", "shared"].join("/"))
    };
    let write = |path: &str, text: &str| fs::write(dir.join(fill(path)), fill(text)).unwrap();
    write("docs/SPEC{md}", "# spec\n");
    write("vendor/x/PATCHES{md}", "");
    write("README{md}", "see docs/SPEC{md} and SPEC{md}\n");
    let lines = [
        "//! The events (docs/SPEC{md} Part 1); see README{md}.", // 1 fine
        "//! Each crate's changes: vendor/*/PATCHES{md}.",        // 2 fine (glob)
        "//! From https://example.com/docs/GONE{md}, not ours.",  // 3 fine (web)
        "//! The rules of `SPEC{md}` (bare, found in docs/).",    // 4 fine
        "//! See PROTOCOL{md} Part 2.",                           // 5 missing
        "//! Moved: docs/OLD{md}.",                               // 6 missing
        "//! Escapes: ../../elsewhere/SPEC{md}.",                 // 7 outside
        "//! Measured: {beside}/NOTES{md}.",                      // 8 outside, twice
    ];
    write("crate/src/lib.rs", &lines.join("\n"));
    // Never scanned.
    write("target/x.rs", "// docs/NOPE{md}\n");
    write("vendor/x/lib.rs", "// docs/NOPE{md}\n");

    let broken = broken_citations(&dir);
    let _ = fs::remove_dir_all(&dir);
    let lines: Vec<&str> = broken
        .iter()
        .map(|b| b.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "crate/src/lib.rs:5",
            "crate/src/lib.rs:6",
            "crate/src/lib.rs:7",
            "crate/src/lib.rs:8",
            "crate/src/lib.rs:8"
        ],
        "{broken:#?}"
    );
}
