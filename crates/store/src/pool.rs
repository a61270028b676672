//! A pool of read connections (r2d2), so that a flood of reads (the web UI, the MLflow client)
//! never queues behind one mutex, nor behind the engine's write: WAL lets every reader run beside
//! the one writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Result, Store, StoreError};

/// Opens read connections to one database file.
struct Readers {
    path: PathBuf,
}

impl r2d2::ManageConnection for Readers {
    type Connection = Store;
    type Error = StoreError;

    fn connect(&self) -> Result<Store> {
        Store::open_reader(&self.path)
    }
    fn is_valid(&self, store: &mut Store) -> Result<()> {
        store.schema_version().map(|_| ())
    }
    fn has_broken(&self, _: &mut Store) -> bool {
        false
    }
}

/// Read connections to the database, shared by every capability. Cheap to clone.
#[derive(Clone)]
pub struct ReadPool {
    pool: r2d2::Pool<Readers>,
}

impl ReadPool {
    /// Up to `size` connections to `path` (whose schema must be current: open a [`Store`] on it
    /// first, which migrates it).
    pub fn open(path: &Path, size: u32) -> Result<ReadPool> {
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .test_on_check_out(false)
            .build(Readers {
                path: path.to_path_buf(),
            })
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(ReadPool { pool })
    }

    /// Runs `f` now if a connection is free, else hands `f` back (never waits).
    pub fn read_if_free<T, E: From<StoreError>, F: FnOnce(&Store) -> Result<T, E>>(
        &self,
        f: F,
    ) -> Result<Result<T, E>, F> {
        match self.pool.try_get() {
            Some(conn) => Ok(f(&conn)),
            None => Err(f),
        }
    }

    /// Runs `f` on a free connection, waiting for one when all are busy.
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self
            .pool
            .get()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        f(&conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_if_free_runs_now_or_hands_the_read_back_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("petri.db");
        Store::open(&db).unwrap();
        let pool = ReadPool::open(&db, 1).unwrap();
        let version = |s: &Store| s.schema_version();
        let now: std::result::Result<Result<i64>, _> = pool.read_if_free(version);
        assert!(
            matches!(now, Ok(Ok(v)) if v > 0),
            "a free connection reads at once"
        );
        // The only connection is taken: the read comes back unrun, at once.
        pool.read(|_held: &Store| {
            let later = pool.read_if_free(version);
            assert!(
                later.is_err(),
                "no connection free: the read is handed back"
            );
            Ok::<_, StoreError>(())
        })
        .unwrap();
        assert!(
            pool.read_if_free(version).is_ok(),
            "free again once given back"
        );
    }
}
