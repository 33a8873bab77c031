//! Build contexts as tar archives, made the same way every time: entries in
//! name order, owner root, one fixed modification time. The same files give
//! the same bytes, so the same digest, and the engine's layer cache hits.

use std::path::Path;

use anyhow::Context;

/// The fixed modification time of every entry (2020-01-01). A build that
/// needs fresh times (cargo does) touches its files itself.
const MTIME: u64 = 1_577_836_800;

/// `dir` as a build context, leaving out what its `.dockerignore` names.
pub fn directory(dir: &Path) -> anyhow::Result<Vec<u8>> {
    archive(dir, &|_, _| true)
}

/// The part of `dir`'s build context a binary is built from: the files
/// `inputs` covers, as [`directory`] would hold them. Its bytes are what an
/// image's digest is taken of, so an edit elsewhere in the context leaves
/// the image alone.
pub fn subset(dir: &Path, inputs: &crate::workspace::Inputs) -> anyhow::Result<Vec<u8>> {
    archive(dir, &|path, is_dir| {
        inputs.covers(path)
            || (is_dir
                && inputs
                    .dirs
                    .iter()
                    .chain(&inputs.files)
                    .any(|input| input.starts_with(path)))
    })
}

/// `dir` as a tar, leaving out what its `.dockerignore` names and what
/// `keep` (given each absolute path and whether it is a folder) refuses.
fn archive(dir: &Path, keep: &dyn Fn(&Path, bool) -> bool) -> anyhow::Result<Vec<u8>> {
    let ignore = std::fs::read_to_string(dir.join(".dockerignore"))
        .map(|text| Ignore::parse(&text))
        .unwrap_or_default();
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut tar = tar::Builder::new(Vec::new());
    add_dir(&mut tar, &root, "", &ignore, keep)?;
    tar.into_inner().context("cannot finish the build context")
}

/// A build context of the given (name, content, mode) files.
pub fn files(entries: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in entries {
        append(&mut tar, name, data, *mode)?;
    }
    tar.into_inner().context("cannot finish the build context")
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(MTIME);
    header.set_cksum();
    tar.append_data(&mut header, name, data)
        .with_context(|| format!("cannot add {name} to the build context"))
}

fn add_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &str,
    ignore: &Ignore,
    keep: &dyn Fn(&Path, bool) -> bool,
) -> anyhow::Result<()> {
    let here = root.join(rel);
    let mut entries = std::fs::read_dir(&here)
        .with_context(|| format!("cannot read {}", here.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", here.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if ignore.excludes(&path) {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {path}"))?;
        if !keep(&root.join(&path), kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            add_dir(tar, root, &path, ignore, keep)?;
        } else if kind.is_file() {
            let data =
                std::fs::read(entry.path()).with_context(|| format!("cannot read {path}"))?;
            let executable = std::os::unix::fs::PermissionsExt::mode(
                &entry
                    .metadata()
                    .with_context(|| format!("cannot read {path}"))?
                    .permissions(),
            ) & 0o111
                != 0;
            append(tar, &path, &data, if executable { 0o755 } else { 0o644 })?;
        }
        // Symbolic links and other special files stay out, as they would
        // point outside the context.
    }
    Ok(())
}

/// The patterns of a `.dockerignore`: `*` and `?` within a path segment,
/// `**` across segments, `!` to take a path back in; a pattern naming a
/// folder leaves out everything below it. Later lines win, as in docker.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (keep, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segments = pattern
                    .trim_start_matches("./")
                    .trim_matches('/')
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                (keep, segments)
            })
            .collect();
        Self { rules }
    }

    /// Whether `path` (relative, `/`-separated) stays out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (keep, pattern) in &self.rules {
            // A pattern matching the path or one of its folders.
            let hit = (1..=segments.len()).any(|n| matches(pattern, &segments[..n]));
            if hit {
                excluded = !keep;
            }
        }
        excluded
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((p, rest)), _) if p == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        (Some((p, rest)), Some((s, path_rest))) => {
            segment_matches(p.as_bytes(), s.as_bytes()) && matches(rest, path_rest)
        }
        _ => false,
    }
}

fn segment_matches(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..]))
        }
        (Some((b'?', rest)), Some((_, text_rest))) => segment_matches(rest, text_rest),
        (Some((p, rest)), Some((t, text_rest))) => p == t && segment_matches(rest, text_rest),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_patterns_match_as_docker_matches_them() {
        let ignore = Ignore::parse(
            "# comment\ntarget\n**/*.md\nservices/*/tests\n./docs/\n!docs/keep.txt\n",
        );
        assert!(ignore.excludes("target"));
        assert!(
            ignore.excludes("target/debug/api"),
            "below an ignored folder"
        );
        assert!(ignore.excludes("README.md"));
        assert!(ignore.excludes("services/api/NOTES.md"));
        assert!(ignore.excludes("services/api/tests/http.rs"));
        assert!(!ignore.excludes("services/api/src/lib.rs"));
        assert!(!ignore.excludes("pixelflowctl/target.rs"));
        assert!(ignore.excludes("docs/other.txt"));
        assert!(!ignore.excludes("docs/keep.txt"), "taken back in by !");
    }

    #[test]
    fn the_same_folder_gives_the_same_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/a.rs"), "fn a() {}").expect("write");
        std::fs::write(dir.path().join("notes.md"), "x").expect("write");
        std::fs::write(dir.path().join(".dockerignore"), "*.md\n").expect("write");
        let first = directory(dir.path()).expect("context");
        // A new modification time alone changes nothing.
        std::fs::write(dir.path().join("src/a.rs"), "fn a() {}").expect("write");
        assert_eq!(first, directory(dir.path()).expect("context"));
        let mut archive = tar::Archive::new(first.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, [".dockerignore", "src/a.rs"]);
    }

    #[test]
    fn the_services_dockerfile_copies_every_workspace_manifest_the_context_holds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("repository file");
        let workspace: toml::Value = read("Cargo.toml").parse().expect("workspace manifest");
        let dockerfile = read("services/Dockerfile");
        let ignore = Ignore::parse(&read(".dockerignore"));
        let copied: Vec<&str> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("COPY "))
            .filter(|l| !l.starts_with("--from"))
            .flat_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words[..words.len() - 1].to_vec()
            })
            .collect();
        let members = workspace["workspace"]["members"]
            .as_array()
            .expect("members");
        for member in members {
            let manifest = format!("{}/Cargo.toml", member.as_str().expect("a path"));
            assert!(
                copied.contains(&manifest.as_str()),
                "services/Dockerfile does not copy {manifest}: cargo cannot load the workspace"
            );
        }
        for source in copied {
            assert!(
                !ignore.excludes(source),
                ".dockerignore leaves out {source}, which services/Dockerfile copies"
            );
        }
    }
}
