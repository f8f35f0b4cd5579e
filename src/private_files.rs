//! Files and folders readable by their owner only: the data folder, the SQLite database (it
//! holds password hashes) and the generated signing secrets. Each is created with its mode
//! rather than tightened afterwards, so there is no moment in which another user could open it.
//! Each new entry is made durable with its folder (an fsync of the folder), as the file's own
//! fsync does not: after a power cut a folder or file made just before could be gone, and the
//! server would start on a new, empty log with new secrets (tests/crash/power_loss.rs).

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700, if it does not exist. An existing folder
/// is left as the operator made it.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    // The folders this makes, deepest first: each is an entry of its parent to sync.
    let made: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    for folder in made.iter().rev() {
        sync_parent(folder)?;
    }
    Ok(())
}

/// Makes `path`'s entry in its folder durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::File::open(parent).and_then(|folder| folder.sync_all()) {
        // A filesystem that cannot sync a folder has nothing more to make durable.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Creates an empty `file` with mode 0600 (and its folder, see `create_dir`) if it does not
/// exist, for a program that then opens it by name and would otherwise create it 0644.
pub fn create_empty(file: &Path) -> std::io::Result<()> {
    if file.as_os_str().is_empty() || file.exists() {
        return Ok(());
    }
    if let Some(dir) = file.parent() {
        create_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => sync_parent(file),
        // Another process made it between the check and the open: it is there, as wanted.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes`, mode 0600: written and synced beside it, then renamed over
/// it, so a crash leaves the old content or the new, never half of it.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_made_for_their_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let db = dir.join("t.db");
        create_empty(&db).unwrap();
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));
        let secrets = root.path().join("c/secrets.json");
        write(&secrets, b"{}").unwrap();
        write(&secrets, b"[]").unwrap();
        assert_eq!(std::fs::read(&secrets).unwrap(), b"[]");
        assert_eq!(mode(&secrets), 0o600);
        assert!(!root.path().join("c/secrets.json.tmp").exists());
    }
}
