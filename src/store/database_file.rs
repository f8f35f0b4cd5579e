//! The SQLite file a server opened, watched for being deleted or replaced underneath it.
//!
//! SQLite keeps writing to the file it opened after the path stops naming it: after an `rm`,
//! or a backup `mv`-ed over the live file, every commit lands in an inode the next start will
//! not open, though each was acknowledged as durable. The same holds for the write-ahead log,
//! where commits stay until a checkpoint copies them into the database. So the SQLite writer
//! asks `check` after each commit and before the appender answers: once the path no longer
//! names what was opened, the batch is refused (503) and so is every later one, until a
//! restart opens what the path names now. A commit that had already been answered before the
//! file went is in the old file, which is the operator's to put back.
//!
//! The check costs a `stat` of the database and, in WAL mode, one of its log per batch —
//! microseconds against the batch's fsync — and never opens the file: closing any descriptor
//! of it would drop the POSIX locks SQLite holds on it in this process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug)]
pub struct DatabaseFile {
    path: PathBuf,
    /// `(device, inode)` of the file SQLite opened. SQLite keeps it open, so the inode
    /// cannot be freed and its number given to another file while we compare against it.
    opened: (u64, u64),
    /// The write-ahead log and its `(device, inode)`, when the database is in WAL mode. By
    /// identity, not by name: once the log is deleted, any connection SQLite opens next (a
    /// reader joining the pool) makes a new, empty one under the same name, while the writer
    /// goes on committing into the deleted one.
    wal: Option<(PathBuf, (u64, u64))>,
    /// Why writes are refused, once they are: until a restart.
    detached: OnceLock<String>,
}

impl DatabaseFile {
    /// The file at `path` as it is now, just after SQLite opened it. `None` where there is
    /// nothing to watch: no such file, or no inodes to compare (not Unix).
    pub fn opened(path: &Path, wal_mode: bool) -> Option<DatabaseFile> {
        let opened = identity(&std::fs::metadata(path).ok()?)?;
        // SQLite names the log after the path it resolved, which follows symlinks; whichever
        // exists now that the migrations have written through it is the one in use.
        let wal = if wal_mode {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            [canonical, path.to_owned()]
                .into_iter()
                .map(|p| with_suffix(&p, "-wal"))
                .find_map(|wal| {
                    let identity = identity(&std::fs::metadata(&wal).ok()?)?;
                    Some((wal, identity))
                })
        } else {
            None
        };
        Some(DatabaseFile {
            path: path.to_owned(),
            opened,
            wal,
            detached: OnceLock::new(),
        })
    }

    /// Why writes are refused, if the file was found gone before (no system call).
    pub fn detached(&self) -> Option<&str> {
        self.detached.get().map(String::as_str)
    }

    /// Whether the path still names the file that was opened, and its log is still there.
    /// Called with the writer connection held after a commit: the log exists then, since
    /// SQLite removes it only when the last connection closes.
    pub fn check(&self) -> Result<(), &str> {
        if let Some(why) = self.detached() {
            return Err(why);
        }
        let changed = match std::fs::metadata(&self.path) {
            Ok(now) if identity(&now) == Some(self.opened) => self.wal_changed(),
            Ok(_) => Some(format!(
                "{} was replaced by another file",
                self.path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{} was deleted", self.path.display()))
            }
            // Unreadable metadata (a permission) says nothing about the file; the disk's
            // own errors reach the writer through SQLite.
            Err(_) => None,
        };
        let Some(changed) = changed else {
            return Ok(());
        };
        let why = format!(
            "{changed} while this server had it open: writes are refused until tokenledger is \
             restarted (the writes acknowledged before are in the old file: put it back first \
             if it still exists under another name)"
        );
        tracing::error!("{why}");
        Err(self.detached.get_or_init(|| why))
    }

    fn wal_changed(&self) -> Option<String> {
        let (wal, opened) = self.wal.as_ref()?;
        let what = match std::fs::metadata(wal) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
            Ok(now) if identity(&now) != Some(*opened) => "was deleted and made anew",
            _ => return None,
        };
        Some(format!(
            "{}, the write-ahead log of {}, {what}",
            wal.display(),
            self.path.display()
        ))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn watched(dir: &Path) -> DatabaseFile {
        let path = dir.join("t.db");
        std::fs::write(&path, b"db").unwrap();
        std::fs::write(dir.join("t.db-wal"), b"wal").unwrap();
        DatabaseFile::opened(&path, true).unwrap()
    }

    #[test]
    fn given_an_untouched_file_then_the_check_passes() {
        let dir = tempfile::tempdir().unwrap();
        let file = watched(dir.path());
        std::fs::write(dir.path().join("t.db"), b"rewritten in place").unwrap();
        assert_eq!(file.check(), Ok(()));
        assert_eq!(file.detached(), None);
    }

    #[test]
    fn given_a_deleted_file_then_writes_stay_refused_after_it_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = watched(dir.path());
        let db = dir.path().join("t.db");
        std::fs::hard_link(&db, dir.path().join("kept")).unwrap();
        std::fs::remove_file(&db).unwrap();
        let why = file.check().unwrap_err().to_owned();
        assert!(why.contains("t.db was deleted while"), "{why}");
        std::fs::rename(dir.path().join("kept"), &db).unwrap();
        assert_eq!(file.check(), Err(why.as_str()), "until a restart");
    }

    #[test]
    fn given_a_file_renamed_over_it_then_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = watched(dir.path());
        std::fs::write(dir.path().join("backup"), b"db").unwrap();
        std::fs::rename(dir.path().join("backup"), dir.path().join("t.db")).unwrap();
        let why = file.check().unwrap_err();
        assert!(why.contains("t.db was replaced by another file"), "{why}");
    }

    #[test]
    fn given_a_deleted_log_then_it_is_detached() {
        let dir = tempfile::tempdir().unwrap();
        let file = watched(dir.path());
        std::fs::remove_file(dir.path().join("t.db-wal")).unwrap();
        let why = file.check().unwrap_err();
        assert!(why.contains("t.db-wal, the write-ahead log of"), "{why}");
    }

    #[test]
    fn given_a_deleted_log_made_anew_by_another_connection_then_it_is_detached() {
        let dir = tempfile::tempdir().unwrap();
        let file = watched(dir.path());
        let wal = dir.path().join("t.db-wal");
        // A reader that connects after the `rm` creates an empty log under the old name.
        let kept = dir.path().join("kept-wal");
        std::fs::hard_link(&wal, &kept).unwrap();
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"").unwrap();
        let why = file.check().unwrap_err();
        assert!(why.contains("was deleted and made anew"), "{why}");
    }
}
