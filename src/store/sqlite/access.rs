//! A data folder the broker cannot write, named at startup. The usual cause is
//! ownership: a bind-mounted folder Docker created as root, a volume filled by
//! root, a database restored as root. SQLite alone would say only "unable to
//! open database file" (code 14) or "attempt to write a readonly database"
//! (code 8), and a restart policy would loop on it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{access, Access};

use super::lock::{beside, lock_path};
use super::StoreError;

/// Checks that this process can write the folder of `database` and every file
/// of the database that exists (the file, its WAL, its shared memory, its
/// lock).
pub fn check_writable(database: &Path) -> Result<(), StoreError> {
    let folder = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let files = [
        database.to_owned(),
        beside(database, "-wal"),
        beside(database, "-shm"),
        lock_path(database),
    ];
    let wanted = [(folder.clone(), Access::WRITE_OK | Access::EXEC_OK)]
        .into_iter()
        .chain(
            files
                .into_iter()
                .filter(|f| f.exists())
                .map(|f| (f, Access::READ_OK | Access::WRITE_OK)),
        );
    for (path, mode) in wanted {
        if access(&path, mode).is_err() {
            return Err(StoreError::NotWritable {
                owner: std::fs::metadata(&path).map(|m| m.uid()).ok(),
                uid: rustix::process::geteuid().as_raw(),
                path,
                folder,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_passes() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("broker.db");
        std::fs::write(&database, b"").unwrap();
        check_writable(&database).unwrap();
    }

    #[test]
    fn the_error_names_the_path_the_uid_and_the_fix() {
        let err = StoreError::NotWritable {
            path: PathBuf::from("/data/broker.db"),
            folder: PathBuf::from("/data"),
            uid: 10001,
            owner: Some(0),
        };
        assert_eq!(
            err.to_string(),
            "store.path: /data/broker.db is not writable by this process (uid 10001; it \
             belongs to uid 0): the data folder and its files must belong to the broker's \
             user: chown -R 10001 /data (in Docker: on the host folder or volume mounted \
             there)"
        );
    }
}
