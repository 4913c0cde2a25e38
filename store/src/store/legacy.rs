//! Converting a data directory of the layout before Delta tables: Parquet files
//! under `spans/`, `structure/` and `links/` (partitioned `date=…/hour=…`),
//! and a `checkpoint` file naming the last WAL record they hold.
//!
//! At open the files the checkpoint covers are brought to the current schema
//! (`upgrade`), then committed, where they lie, to the new Delta tables with
//! the checkpoint as this collector's `txn`; the checkpoint file goes last. A
//! crash in between repeats the step for the tables that do not hold them yet.
//! Files past the checkpoint belong to an interrupted flush and are deleted:
//! their spans replay from the WAL. Read-only openers refuse the old layout
//! and say how to convert it.

use std::fs;
use std::path::{Path, PathBuf};

use super::upgrade::{Table as Upgraded, upgrade};
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::parquet_files::{FileMeta, parse_file_name};
use crate::storage::Storage;
use crate::tables::{TableKind, Tables, append};

const CHECKPOINT_FILE: &str = "checkpoint";

/// True when `data_dir` is in the layout before Delta tables.
pub(super) fn is_legacy(data_dir: &Path) -> bool {
    data_dir.join(CHECKPOINT_FILE).is_file()
}

/// The error a reader that must not write gives for the old layout.
pub(super) fn refuse(data_dir: &Path) -> Error {
    Error::Corrupt(format!(
        "{} is in the layout of an older weft (Parquet files and a checkpoint, no Delta tables); \
         run `weft serve --data-dir {}` once to convert it, then read it again",
        data_dir.display(),
        data_dir.display()
    ))
}

/// Converts the old layout into `tables` (see the module doc).
pub(super) async fn convert(
    config: &StoreConfig,
    storage: &Storage,
    tables: &mut Tables,
    app: &str,
) -> Result<()> {
    let root = &config.data_dir;
    let checkpoint = read_checkpoint(root)?;
    let mut found = Vec::new();
    for kind in TableKind::ALL {
        found.push(legacy_files(&root.join(kind.dir()), checkpoint)?);
    }
    let kinds = [Upgraded::Spans, Upgraded::Structure, Upgraded::Links];
    let pairs: Vec<(&[FileMeta], Upgraded)> = found.iter().map(Vec::as_slice).zip(kinds).collect();
    upgrade(storage, root, &pairs, config.row_group_rows)?;
    for (kind, files) in TableKind::ALL.into_iter().zip(&found) {
        let table = tables.get_mut(kind);
        if table.applied(app).await? >= checkpoint || !table.files()?.is_empty() {
            continue;
        }
        table
            .commit(files, &[], &[(app, checkpoint)], append())
            .await?;
        tracing::info!(
            table = kind.name(),
            files = files.len(),
            "converted to a delta table"
        );
    }
    let path = root.join(CHECKPOINT_FILE);
    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    crate::wal::sync_dir(root)
}

fn read_checkpoint(dir: &Path) -> Result<u64> {
    let path = dir.join(CHECKPOINT_FILE);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.trim().parse().map_err(|_| {
        Error::Corrupt(format!(
            "{} is corrupt ({text:?}); restore it, or delete it to replay the whole wal",
            path.display()
        ))
    })
}

/// The files of one old-layout table the checkpoint covers; unfinished and
/// uncommitted ones are deleted.
fn legacy_files(dir: &Path, checkpoint: u64) -> Result<Vec<FileMeta>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                if name != "_delta_log" {
                    stack.push(path);
                }
                continue;
            }
            let Some((_, seq_hi, _)) = parse_file_name(&name) else {
                if name.ends_with(".tmp") {
                    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
                continue;
            };
            if seq_hi > checkpoint {
                tracing::warn!(file = %path.display(), "removing parquet file of an interrupted flush; its spans replay from the wal");
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            out.push(FileMeta {
                day: day_of(&path).unwrap_or_default(),
                location: path.to_string_lossy().into_owned(),
                rows: 0,
                bytes: meta.len(),
                seq_hi,
                writer: String::new(),
                stats: None,
                modified_ms: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64),
            });
        }
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// The `date=YYYY-MM-DD` directory a file lies in; structure and link files
/// of the old layout lie in none, and take the day they were written.
fn day_of(path: &Path) -> Option<String> {
    let from_dir = path.ancestors().find_map(|p| {
        p.file_name()?
            .to_str()?
            .strip_prefix("date=")
            .map(str::to_owned)
    });
    from_dir.or_else(|| {
        let modified = fs::metadata(path).ok()?.modified().ok()?;
        let t: chrono::DateTime<chrono::Utc> = modified.into();
        Some(t.format("%Y-%m-%d").to_string())
    })
}
