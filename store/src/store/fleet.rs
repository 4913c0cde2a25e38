//! Sharing a table location with other collectors: which of their span files
//! this collector settles (`SettleRole::Fleet`), how far it has settled each
//! writer, the generation its structure rows carry, and the warning when two
//! collectors would each settle their own part of the same traces.
//!
//! What a fleet settler has settled is recorded in its `span_structure`
//! commits (`txn` `settled/<writer>`: that writer's WAL sequence), so after a
//! restart it resumes exactly where its last commit left off: a foreign file
//! is settled once, whatever fails in between.

use std::collections::{HashMap, HashSet};

use crate::config::SettleRole;
use crate::error::Result;
use crate::parquet_files::FileMeta;
use crate::tables::{TableKind, Tables, app};

/// Other writers' span files one settling reads, about: a settler that
/// fell behind (restarted, say) catches up over several settlings.
const MAX_FILES: usize = 64;

/// What this collector knows of the other writers of its location.
pub(super) struct Fleet {
    role: SettleRole,
    app: String,
    /// Per other writer whose traces it settles (`Fleet` only): the WAL
    /// sequence through which its span files are settled here.
    through: HashMap<String, u64>,
    /// Writers that settle their own traces (not settled here), warned of.
    warned: HashSet<String>,
    /// The last structure generation this collector committed. Generations
    /// order one collector's settlings of a trace; a fleet settler's run ahead
    /// of its WAL sequence, since it also settles while it receives nothing.
    pub(super) generation: u64,
}

/// Other writers' span files to settle in one flush, and how far each
/// writer's files will then be settled.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) files: Vec<FileMeta>,
    pub(super) through: Vec<(String, u64)>,
}

impl Fleet {
    pub(super) async fn open(role: SettleRole, app: &str, tables: &Tables) -> Result<Self> {
        let structure = tables.get(TableKind::Structure);
        let generation = structure
            .applied(app)
            .await?
            .max(structure.applied(&app::generation(app)).await?);
        Ok(Self {
            role,
            app: app.to_owned(),
            through: HashMap::new(),
            warned: HashSet::new(),
            generation,
        })
    }

    /// The generation of the next settling: after every earlier one, and
    /// with this collector's own records, at least their WAL sequence (so a
    /// lone collector's generations are its WAL sequences, as they always were).
    pub(super) fn next_generation(&self, own_seq_hi: Option<u64>) -> u64 {
        (self.generation + 1).max(own_seq_hi.unwrap_or(0))
    }

    /// The span files of other writers this collector settles and has not
    /// settled yet (`Fleet`), out of the listed `files`. A writer counts once
    /// it has said its traces are settled elsewhere (`SettleRole::None`); the
    /// others are warned of once, since two collectors settling parts of the
    /// same traces leave each trace in two pieces.
    pub(super) async fn pending(&mut self, files: &[FileMeta], tables: &Tables) -> Result<Pending> {
        let mut pending = Pending::default();
        if self.role == SettleRole::None {
            return Ok(pending);
        }
        let writers: HashSet<&str> = files
            .iter()
            .map(|f| f.writer.as_str())
            .filter(|w| !w.is_empty() && *w != self.app)
            .collect();
        let structure = tables.get(TableKind::Structure);
        for writer in writers {
            if self.through.contains_key(writer) || self.warned.contains(writer) {
                continue;
            }
            let elsewhere = structure.applied(&app::settles_elsewhere(writer)).await? > 0;
            if self.role == SettleRole::Fleet && elsewhere {
                let through = structure.applied(&app::settled(writer)).await?;
                self.through.insert(writer.to_owned(), through);
            } else if !elsewhere && self.role != SettleRole::None {
                self.warned.insert(writer.to_owned());
                tracing::warn!(
                    other = writer,
                    this = %self.app,
                    "another collector writes this table location and settles its own traces: \
                     a trace whose spans reach both is stored as two structures. Set `settle = \
                     \"fleet\"` on one collector of the location and `settle = \"none\"` on the others"
                );
            }
        }
        if self.role != SettleRole::Fleet {
            return Ok(pending);
        }
        // Whole flushes (all files of one writer's WAL range) in WAL order,
        // at most about MAX_FILES of them per settling, so a settler that
        // fell behind catches up in bounded steps.
        let mut unsettled: Vec<&FileMeta> = files
            .iter()
            .filter(|f| self.through.get(&f.writer).is_some_and(|t| f.seq_hi > *t))
            .collect();
        unsettled.sort_by(|a, b| (a.seq_hi, &a.writer).cmp(&(b.seq_hi, &b.writer)));
        let mut reach: HashMap<&str, u64> = HashMap::new();
        for file in unsettled {
            let last = pending.files.last().map(|f| (f.seq_hi, f.writer.as_str()));
            if pending.files.len() >= MAX_FILES && last != Some((file.seq_hi, &file.writer)) {
                break;
            }
            pending.files.push(file.clone());
            let r = reach.entry(file.writer.as_str()).or_default();
            *r = (*r).max(file.seq_hi);
        }
        pending.through = reach.into_iter().map(|(w, s)| (w.to_owned(), s)).collect();
        pending.through.sort();
        Ok(pending)
    }

    /// Records a committed settling.
    pub(super) fn committed(&mut self, generation: u64, through: &[(String, u64)]) {
        self.generation = self.generation.max(generation);
        for (writer, seq) in through {
            self.through.insert(writer.clone(), *seq);
        }
    }

    /// The `txn`s of a `span_structure` commit besides the collector's own
    /// WAL sequence.
    pub(super) fn structure_txns(
        &self,
        generation: u64,
        own: bool,
        through: &[(String, u64)],
    ) -> Vec<(String, u64)> {
        match self.role {
            SettleRole::Own => Vec::new(),
            SettleRole::None if own => vec![(app::settles_elsewhere(&self.app), 1)],
            SettleRole::None => Vec::new(),
            SettleRole::Fleet => std::iter::once((app::generation(&self.app), generation))
                .chain(through.iter().map(|(w, s)| (app::settled(w), *s)))
                .collect(),
        }
    }
}
