//! The write-ahead log: numbered, checksummed records in segment files.
//!
//! A segment is `wal/<first seq, 20 digits>.wal`, a run of frames:
//! `len: u32 LE | crc32(seq ‖ payload): u32 LE | seq: u64 LE | payload`.
//! [`WalWriter`] appends frames and `fdatasync`s once per group of requests;
//! [`replay`] reads them back. A frame cut short at the very end of the last
//! segment is a write that was never acknowledged: it is dropped with a warning
//! and the file truncated. A frame that fails its checksum anywhere else is
//! copied to `wal/quarantine/` and skipped, so a bad byte never becomes a crash loop.
//!
//! A failed write or sync (a full disk) rolls the segment back to the end of
//! the last synced record ([`WalWriter::roll_back`]): the records of the
//! failed group were never acknowledged and must not replay, and the records
//! acknowledged after it must not land behind a partial frame.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const HEADER: usize = 16;
/// A frame longer than this is taken as a corrupt length field.
const MAX_FRAME: usize = 1 << 30;

/// Appends frames to the active segment.
pub struct WalWriter {
    dir: PathBuf,
    file: BufWriter<File>,
    path: PathBuf,
    first_seq: u64,
    bytes: u64,
    next_seq: u64,
    /// The segment's length and next sequence after the last successful sync.
    synced_bytes: u64,
    synced_next_seq: u64,
    /// A write failed and rolling back did not succeed yet: nothing may be
    /// appended until [`WalWriter::roll_back`] does.
    broken: bool,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

/// This process's hold on a WAL directory: an exclusive lock on its `LOCK`
/// file, released when dropped or when the process ends (kill -9 included).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the WAL directory `dir` for this process, or says who holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "process id unknown".to_owned());
            return Err(Error::InUse {
                path: dir.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    // Who holds it, for the message a second process gives; on a full disk
    // this may not fit, and the lock holds all the same.
    let _ = file
        .set_len(0)
        .and_then(|_| write!(file, "pid {}", std::process::id()));
    Ok(DirLock { _file: file })
}

/// Makes a rename or create durable by syncing the directory entry.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl WalWriter {
    /// Opens a new segment in `dir` whose first record will have `next_seq`.
    pub fn open(dir: &Path, next_seq: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(segment_name(next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            first_seq: next_seq,
            bytes,
            next_seq,
            synced_bytes: bytes,
            synced_next_seq: next_seq,
            broken: false,
        })
    }

    /// Whether a failed write still awaits its roll back.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Undoes everything appended since the last successful sync: the
    /// buffer is dropped unwritten, the segment truncated to its synced
    /// length, and the sequence numbers handed out since are reused. Until
    /// this succeeds the writer refuses appends.
    pub fn roll_back(&mut self) -> Result<()> {
        self.broken = true;
        let io = |e| Error::io(&self.path, e);
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let old = std::mem::replace(&mut self.file, BufWriter::with_capacity(1 << 20, file));
        // Dropping a BufWriter writes its buffer; `into_parts` does not.
        drop(old.into_parts());
        let file = self.file.get_ref();
        file.set_len(self.synced_bytes)
            .and_then(|_| file.sync_all())
            .map_err(io)?;
        self.bytes = self.synced_bytes;
        self.next_seq = self.synced_next_seq;
        self.broken = false;
        Ok(())
    }

    /// Buffers one record and returns its sequence number. Not durable until [`Self::sync`].
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if self.broken {
            return Err(Error::io(
                &self.path,
                std::io::Error::other("an earlier write failed and could not be rolled back yet"),
            ));
        }
        let seq = self.next_seq;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(payload);
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (*l as usize) < MAX_FRAME)
            .ok_or_else(|| Error::TooLarge { limit: MAX_FRAME })?;
        let io = |e| Error::io(&self.path, e);
        self.file.write_all(&len.to_le_bytes()).map_err(io)?;
        self.file
            .write_all(&crc.finalize().to_le_bytes())
            .map_err(io)?;
        self.file.write_all(&seq.to_le_bytes()).map_err(io)?;
        self.file.write_all(payload).map_err(io)?;
        self.bytes += (HEADER + payload.len()) as u64;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Writes buffered records and `fdatasync`s the segment.
    pub fn sync(&mut self) -> Result<()> {
        if self.broken {
            self.roll_back()?;
        }
        let io = |e| Error::io(&self.path, e);
        self.file.flush().map_err(io)?;
        self.file.get_ref().sync_data().map_err(io)?;
        self.synced_bytes = self.bytes;
        self.synced_next_seq = self.next_seq;
        Ok(())
    }

    /// Starts a new segment and deletes every older segment whose records are all
    /// at or below `checkpoint` (held by every table).
    pub fn rotate_and_trim(&mut self, checkpoint: u64) -> Result<()> {
        self.sync()?;
        if self.bytes > 0 {
            *self = WalWriter::open(&self.dir, self.next_seq)?;
        }
        let active = self.first_seq;
        let mut firsts = list_segments(&self.dir)?;
        firsts.retain(|f| *f < active);
        // Segment i holds seqs [firsts[i], next segment's first - 1].
        let mut bounds = firsts.clone();
        bounds.push(active);
        for (i, first) in firsts.iter().enumerate() {
            let last_seq = bounds[i + 1].saturating_sub(1);
            if last_seq <= checkpoint {
                let path = self.dir.join(segment_name(*first));
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }
}

/// First sequence numbers of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What replay found besides the good records.
#[derive(Debug, Default, PartialEq)]
pub struct ReplayReport {
    pub records: usize,
    /// Bytes of a torn final record that were truncated away.
    pub torn_bytes: u64,
    /// Files written to `quarantine/` for corrupt records.
    pub quarantined: Vec<PathBuf>,
}

/// How [`replay`] treats damage it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Truncate torn tails and quarantine corrupt records (the store's owner).
    Repair,
    /// Skip damage and change nothing (a reader beside a running server).
    ReadOnly,
}

/// Reads every record of every segment in order, calling `on_record(seq, payload)`.
pub fn replay(
    dir: &Path,
    mode: Mode,
    mut on_record: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let segments = list_segments(dir)?;
    for (i, first) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        let path = dir.join(segment_name(*first));
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| Error::io(&path, e))?;
        let mut pos = 0usize;
        while pos < data.len() {
            if mode == Mode::ReadOnly {
                match read_frame(&data[pos..]) {
                    Frame::Good { seq, payload, len } => {
                        on_record(seq, payload)?;
                        report.records += 1;
                        pos += len;
                    }
                    Frame::Corrupt { len } => pos += len,
                    Frame::Short | Frame::Unreadable => break,
                }
                continue;
            }
            match read_frame(&data[pos..]) {
                Frame::Good { seq, payload, len } => {
                    on_record(seq, payload)?;
                    report.records += 1;
                    pos += len;
                }
                Frame::Short if last_segment => {
                    report.torn_bytes = (data.len() - pos) as u64;
                    tracing::warn!(
                        segment = %path.display(),
                        offset = pos,
                        bytes = report.torn_bytes,
                        "dropping torn final wal record (it was never acknowledged)"
                    );
                    truncate(&path, pos as u64)?;
                    break;
                }
                Frame::Corrupt { len } if pos + len < data.len() || !last_segment => {
                    let q = quarantine(dir, *first, pos, &data[pos..pos + len]);
                    tracing::error!(
                        segment = %path.display(),
                        offset = pos,
                        quarantined = ?q,
                        "wal record failed its checksum; moved aside"
                    );
                    report.quarantined.extend(q);
                    pos += len;
                }
                Frame::Corrupt { .. } if last_segment => {
                    // The final record of the log, half written: never acknowledged.
                    report.torn_bytes = (data.len() - pos) as u64;
                    tracing::warn!(segment = %path.display(), offset = pos, "dropping torn final wal record");
                    truncate(&path, pos as u64)?;
                    break;
                }
                Frame::Short | Frame::Corrupt { .. } | Frame::Unreadable => {
                    let q = quarantine(dir, *first, pos, &data[pos..]);
                    tracing::error!(
                        segment = %path.display(),
                        offset = pos,
                        quarantined = ?q,
                        "unreadable wal data; rest of segment moved aside"
                    );
                    report.quarantined.extend(q);
                    break;
                }
            }
        }
    }
    Ok(report)
}

enum Frame<'a> {
    Good {
        seq: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// Fewer bytes than the frame needs.
    Short,
    /// A whole frame whose checksum does not match.
    Corrupt { len: usize },
    /// A length field no writer could have produced.
    Unreadable,
}

fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < HEADER {
        return Frame::Short;
    }
    let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let len = word(0) as usize;
    if len >= MAX_FRAME {
        return Frame::Unreadable;
    }
    let total = HEADER + len;
    if buf.len() < total {
        return Frame::Short;
    }
    let crc = word(4);
    let seq_bytes = &buf[8..16];
    let payload = &buf[HEADER..total];
    let mut h = crc32fast::Hasher::new();
    h.update(seq_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return Frame::Corrupt { len: total };
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(seq_bytes);
    Frame::Good {
        seq: u64::from_le_bytes(seq),
        payload,
        len: total,
    }
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Copies a bad record aside for a person to look at. On a full disk the
/// copy may fail; replay goes on all the same (the bytes stay in their
/// segment until it is trimmed), so a full disk never stops a start.
fn quarantine(dir: &Path, segment: u64, offset: usize, bytes: &[u8]) -> Option<PathBuf> {
    let qdir = dir.join("quarantine");
    let path = qdir.join(format!("{segment:020}-{offset}.bad"));
    let copied = fs::create_dir_all(&qdir).and_then(|_| fs::write(&path, bytes));
    if let Err(e) = copied {
        let _ = fs::remove_file(&path);
        tracing::error!(
            path = %path.display(),
            error = %e,
            "cannot copy a bad wal record aside; it stays in its segment until trimmed"
        );
        return None;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path) -> (Vec<(u64, Vec<u8>)>, ReplayReport) {
        let mut got = Vec::new();
        let report = replay(dir, Mode::Repair, |seq, p| {
            got.push((seq, p.to_vec()));
            Ok(())
        })
        .unwrap();
        (got, report)
    }

    #[test]
    fn appends_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        assert_eq!(w.append(b"one").unwrap(), 1);
        assert_eq!(w.append(b"two").unwrap(), 2);
        w.sync().unwrap();
        let (got, report) = collect(dir.path());
        assert_eq!(got, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        assert_eq!(report.records, 2);
    }

    #[test]
    fn torn_tail_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        w.append(b"kept").unwrap();
        w.append(b"torn away").unwrap();
        w.sync().unwrap();
        let path = dir.path().join(segment_name(1));
        let len = fs::metadata(&path).unwrap().len();
        truncate(&path, len - 3).unwrap();
        let (got, report) = collect(dir.path());
        assert_eq!(got, vec![(1, b"kept".to_vec())]);
        assert_eq!(report.torn_bytes, (HEADER + 9 - 3) as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER + 4) as u64);
        // A second replay finds a clean log.
        let (_, report) = collect(dir.path());
        assert_eq!(report.torn_bytes, 0);
    }

    #[test]
    fn corrupt_middle_record_is_quarantined_and_the_rest_replays() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        w.append(b"first").unwrap();
        w.append(b"second").unwrap();
        w.append(b"third").unwrap();
        w.sync().unwrap();
        let path = dir.path().join(segment_name(1));
        let mut data = fs::read(&path).unwrap();
        let second_payload = HEADER + 5 + HEADER;
        data[second_payload] ^= 0xff;
        fs::write(&path, data).unwrap();
        let (got, report) = collect(dir.path());
        assert_eq!(got, vec![(1, b"first".to_vec()), (3, b"third".to_vec())]);
        assert_eq!(report.quarantined.len(), 1);
        assert!(report.quarantined[0].exists());
    }

    #[test]
    fn rotation_trims_segments_at_or_below_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 1).unwrap();
        w.append(b"a").unwrap();
        w.append(b"b").unwrap();
        w.rotate_and_trim(0).unwrap();
        w.append(b"c").unwrap();
        w.rotate_and_trim(2).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![3, 4]);
        let (got, _) = collect(dir.path());
        assert_eq!(got, vec![(3, b"c".to_vec())]);
    }
}
