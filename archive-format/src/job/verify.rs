//! The verify job: a delta archive and its full proven completely, every
//! block rebuilt and checked, nothing written.

use super::{
    authenticate, open_archive, open_source, rebuild, FullSource, JobRecord, JobResult,
    RestoreFailure, Source,
};
use crate::auth::Key;
use crate::cancel::Cancel;
use crate::delta::DeltaArchive;
use crate::error::Hash;
use crate::limits::Limits;
use crate::restore::{DiscardSink, RestoreProgress};
use std::fs::File;
use std::path::PathBuf;

/// What to verify.
#[derive(Debug)]
pub struct VerifyRequest {
    /// The delta archive: opened by `prepare`, and the folder searched
    /// first for its full.
    pub archive: PathBuf,
    pub full: FullSource,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Prove the archive's MAC with this key before anything else.
    pub key: Option<Key>,
    pub limits: Limits,
}

impl VerifyRequest {
    /// A verify of `archive`, its full found beside it.
    pub fn new(archive: impl Into<PathBuf>) -> Self {
        VerifyRequest {
            archive: archive.into(),
            full: FullSource::Search { search_path: None },
            threads: 0,
            key: None,
            limits: Limits::default(),
        }
    }
}

/// A verify ready to run: the archive authenticated, the full found and
/// proven the right one.
pub struct PreparedVerify {
    source: Source,
    threads: usize,
    record: JobRecord,
}

/// What a finished verify proved.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyOutcome {
    /// The identity proven: the delta's.
    pub identity: Hash,
    pub blocks: u64,
    pub progress: RestoreProgress,
    pub record: JobRecord,
}

impl PreparedVerify {
    /// Opens `request.archive` and prepares the verify.
    pub fn prepare(request: VerifyRequest) -> JobResult<Self> {
        let delta = open_archive(&request.archive, &request.limits)
            .map_err(|e| RestoreFailure::new(e, &JobRecord::default()))?;
        Self::prepare_with(delta, request)
    }

    /// Prepares the verify of `delta`, already open (from
    /// `request.archive`): proves its MAC with the key, if given, then
    /// finds, opens and proves its full.
    pub fn prepare_with(delta: DeltaArchive<File>, request: VerifyRequest) -> JobResult<Self> {
        let mut record = JobRecord::default();
        let opened = authenticate(&delta, request.key.as_ref(), &mut record)
            .and_then(|()| open_source(delta, &request.archive, request.full, &request.limits));
        match opened {
            Ok(source) => {
                record.full = Some(source.full_name().to_path_buf());
                Ok(PreparedVerify {
                    source,
                    threads: request.threads,
                    record,
                })
            }
            Err(e) => Err(RestoreFailure::new(e, &record)),
        }
    }

    /// How far the job got: the key id and the full.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    /// Rebuilds every block and proves it, and the whole against the
    /// delta's identity, writing nothing.
    pub fn run(
        self,
        progress: &mut dyn FnMut(&RestoreProgress),
        cancel: &Cancel,
    ) -> JobResult<VerifyOutcome> {
        let PreparedVerify {
            source,
            threads,
            mut record,
        } = self;
        match rebuild(
            source,
            &mut DiscardSink,
            threads,
            None,
            progress,
            cancel,
            &mut record,
        ) {
            Ok(report) => Ok(VerifyOutcome {
                identity: report.identity,
                blocks: report.blocks,
                progress: report.progress,
                record,
            }),
            Err(e) => Err(RestoreFailure::new(e, &record)),
        }
    }
}
