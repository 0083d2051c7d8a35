//! One process owns a database. Two brokers on one SQLite file both believe they
//! are its only writer: each hands out message_ids from its own counter and returns
//! the other's claims to the queue, so messages go out twice. The owner therefore
//! holds an exclusive advisory lock on `{database}.lock` before it opens the
//! database, and writes its PID there so that a second process can name it.
//!
//! The lock is the kernel's (flock), so it ends with the process however it ends:
//! a SIGKILLed broker leaves a file behind but no lock.
//!
//! The owner also keeps checking that the path still names the file it opened
//! (`DatabaseFile`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// How often a lock this process itself seems to hold is tried again, 10 ms
/// apart (acquire).
const OWN_LOCK_TRIES: u32 = 50;

/// Held for as long as the process writes the database.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

/// The lock file of the database at `database`.
pub fn lock_path(database: &Path) -> PathBuf {
    beside(database, ".lock")
}

/// The file SQLite or the broker keeps beside the database: its name with
/// `suffix` appended (`-wal`, `-shm`, `.lock`).
pub(super) fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl DatabaseLock {
    /// Takes the lock of the database at `database`, or says who holds it.
    pub fn acquire(database: &Path) -> Result<DatabaseLock, StoreError> {
        let path = lock_path(database);
        let io_error = |source| StoreError::Io {
            action: "open the lock file",
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        // Held by this very process: a lock it let go of a moment ago may
        // live on in a child it is forking, which shares the lock until its
        // exec closes the descriptor (tests reopen a database while others
        // spawn processes). Such a hold ends within milliseconds.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut owner = String::new();
                    let _ = file.seek(SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut owner);
                    let owner: Option<u32> = owner.trim().parse().ok();
                    tries += 1;
                    if owner == Some(std::process::id()) && tries < OWN_LOCK_TRIES {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                    return Err(StoreError::Locked {
                        database: database.to_owned(),
                        owner,
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io_error(source)),
            }
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|()| file.sync_data())
            .map_err(io_error)?;
        Ok(DatabaseLock { _file: file })
    }
}

/// The size of the write-ahead log beside the database `path` (0 when there
/// is none).
pub fn wal_bytes(path: &Path) -> u64 {
    std::fs::metadata(beside(path, "-wal")).map_or(0, |m| m.len())
}

/// The database file as it was opened: (device, inode). A file deleted or
/// replaced under the broker keeps taking writes through the open descriptor,
/// and all of them vanish at the next start, so the writer compares the path's
/// identity with this one after every commit.
pub struct DatabaseFile {
    pub(super) path: PathBuf,
    identity: (u64, u64),
}

impl DatabaseFile {
    /// The size of its write-ahead log.
    pub fn wal_bytes(&self) -> u64 {
        wal_bytes(&self.path)
    }

    pub fn identify(path: &Path) -> std::io::Result<DatabaseFile> {
        Ok(DatabaseFile {
            path: path.to_owned(),
            identity: file_identity(path)?,
        })
    }

    /// Whether the path still names the file that was opened.
    pub(super) fn unchanged(&self) -> bool {
        file_identity(&self.path).is_ok_and(|id| id == self.identity)
    }
}

#[cfg(unix)]
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|_| (0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_and_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let first = DatabaseLock::acquire(&db).unwrap();
        match DatabaseLock::acquire(&db) {
            Err(StoreError::Locked { database, owner }) => {
                assert_eq!(database, db);
                assert_eq!(owner, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        DatabaseLock::acquire(&db).expect("free again once the owner let go");
    }

    #[test]
    fn a_lock_file_that_cannot_be_created_gives_the_os_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();
        let err = DatabaseLock::acquire(&file.join("outbox.db")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Not a directory"), "{text}");
        assert!(text.contains("outbox.db.lock"), "{text}");
    }
}
