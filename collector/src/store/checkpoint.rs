//! The checkpoint file: the highest WAL sequence durable in Parquet, written
//! atomically (temporary file, fsync, rename, fsync the directory).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::wal::sync_dir;

const CHECKPOINT_FILE: &str = "checkpoint";

pub(super) fn read_checkpoint(dir: &Path) -> Result<u64> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            Error::Corrupt(format!(
                "{} is corrupt ({s:?}); restore it or delete it to replay the whole wal",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path, e)),
    }
}

pub(super) fn write_checkpoint(dir: &Path, seq: u64) -> Result<()> {
    let tmp: PathBuf = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let path = dir.join(CHECKPOINT_FILE);
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        writeln!(f, "{seq}")
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)
}
