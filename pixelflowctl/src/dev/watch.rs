//! The files `dev` watches, and their changes gathered into batches: saves
//! that arrive close together (an editor writing a file in two steps, a
//! formatter touching several) become one reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long after a change further changes join its batch.
pub const SETTLE: Duration = Duration::from_millis(200);

/// A running watch: dropping it stops it.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<PathBuf>,
    /// The batch being gathered and when it closes: kept here, not in the
    /// future, so a `select!` that drops [`Watch::next_batch`] for another
    /// branch (a log line) loses no change.
    pending: BTreeSet<PathBuf>,
    closes: Option<tokio::time::Instant>,
}

impl Watch {
    /// Watches each of `folders` (recursively) and `files`. Only what is
    /// named: the workspace's `target/` (rewritten by every build) is never
    /// watched.
    pub fn start(folders: &[PathBuf], files: &[PathBuf]) -> anyhow::Result<Self> {
        let (tx, changes) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else {
                    return;
                };
                // Reads and metadata-only changes (an editor's atime) rebuild
                // nothing.
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for path in event.paths {
                    let _ = tx.send(path);
                }
            })
            .context("cannot start watching files")?;
        for folder in folders.iter().filter(|f| f.is_dir()) {
            watcher
                .watch(folder, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", folder.display()))?;
        }
        for file in files.iter().filter(|f| f.exists()) {
            watcher
                .watch(file, RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", file.display()))?;
        }
        Ok(Self {
            _watcher: watcher,
            changes,
            pending: BTreeSet::new(),
            closes: None,
        })
    }

    /// The next batch of changed paths: the first change, and every other
    /// that follows within [`SETTLE`] of the one before. `None` once the
    /// watcher has stopped. Cancel-safe: a batch begun is kept.
    pub async fn next_batch(&mut self) -> Option<BTreeSet<PathBuf>> {
        loop {
            let Some(closes) = self.closes else {
                let first = self.changes.recv().await?;
                self.pending.insert(first);
                self.closes = Some(tokio::time::Instant::now() + SETTLE);
                continue;
            };
            match tokio::time::timeout_at(closes, self.changes.recv()).await {
                Ok(Some(path)) => {
                    self.pending.insert(path);
                    self.closes = Some(tokio::time::Instant::now() + SETTLE);
                }
                Ok(None) | Err(_) => {
                    self.closes = None;
                    let mut batch = std::mem::take(&mut self.pending);
                    batch.retain(|p| !is_editor_noise(p));
                    return Some(batch);
                }
            }
        }
    }
}

/// Editors' swap, backup and temporary files, and version control's own.
fn is_editor_noise(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.starts_with(".#")
        || name == "4913" // vim's probe of whether it may write
        || path.components().any(|c| c.as_os_str() == ".git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_close_together_arrive_as_one_batch_without_editor_noise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watch = Watch::start(&[dir.path().to_path_buf()], &[]).expect("watch");
        std::fs::write(dir.path().join("a.rs"), "a").expect("write");
        std::fs::write(dir.path().join("b.rs"), "b").expect("write");
        std::fs::write(dir.path().join(".a.rs.swp"), "x").expect("write");
        // Dropped for another branch of a select, as the loop does while
        // logs stream: what it had gathered is kept.
        let _ = tokio::time::timeout(Duration::from_millis(1), watch.next_batch()).await;
        let batch = watch.next_batch().await.expect("a batch");
        let names: BTreeSet<String> = batch
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, BTreeSet::from(["a.rs".into(), "b.rs".into()]));
    }
}
