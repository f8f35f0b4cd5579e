//! The power-loss filesystem through the kernel, as a program sees it: std::fs calls, and a
//! real SQLite in a process of its own (`src/bin/lazyfs_sqlite.rs`). Each test mounts its own
//! filesystem; without /dev/fuse or root each skips with its reason, and fails under CI.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use tokenledger_test_support::lazyfs::{Entries, LazyFs, mount_or_skip};

/// A mounted filesystem and the directory under it; the filesystem is unmounted first.
struct Mounted {
    fs: LazyFs,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn path(&self, name: &str) -> PathBuf {
        self.fs.path().join(name)
    }
}

fn mount(entries: Entries) -> Option<Mounted> {
    let dir = tempfile::tempdir().expect("a mountpoint");
    let fs = mount_or_skip(dir.path(), entries)?;
    Some(Mounted { fs, _dir: dir })
}

fn write_file(path: &Path, content: &[u8], fsync: bool) {
    let mut file = File::create(path).expect("create");
    file.write_all(content).expect("write");
    if fsync {
        file.sync_all().expect("fsync");
    }
}

fn fsync_dir(path: &Path) {
    File::open(path)
        .expect("open the directory")
        .sync_all()
        .expect("fsync the directory");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn a_write_followed_by_fsync_survives_a_power_cut() {
    let Some(fs) = mount(Entries::Immediate) else {
        return;
    };
    write_file(&fs.path("kept"), b"acknowledged", true);

    fs.fs.power_cut();

    assert_eq!(
        read(&fs.path("kept")).as_deref(),
        Some(&b"acknowledged"[..])
    );
}

#[test]
fn a_write_without_fsync_is_gone_after_a_power_cut_though_reads_saw_it() {
    let Some(fs) = mount(Entries::Immediate) else {
        return;
    };
    let path = fs.path("log");
    write_file(&path, b"synced", true);
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(b" and not").expect("append");
    drop(file);
    assert_eq!(read(&path).as_deref(), Some(&b"synced and not"[..]));

    fs.fs.power_cut();

    assert_eq!(read(&path).as_deref(), Some(&b"synced"[..]));
}

#[test]
fn a_file_never_fsynced_keeps_its_entry_but_loses_its_content_as_under_lazyfs() {
    let Some(fs) = mount(Entries::Immediate) else {
        return;
    };
    write_file(&fs.path("unsynced"), b"lost", false);
    fs::create_dir(fs.path("sub")).expect("mkdir");

    fs.fs.power_cut();

    assert_eq!(read(&fs.path("unsynced")).as_deref(), Some(&b""[..]));
    assert!(fs.path("sub").is_dir());
}

#[test]
fn an_entry_whose_directory_was_never_fsynced_is_gone_when_entries_wait_for_the_directory() {
    let Some(fs) = mount(Entries::OnDirectoryFsync) else {
        return;
    };
    fs::create_dir(fs.path("data")).expect("mkdir");
    fsync_dir(fs.fs.path());
    write_file(&fs.path("data/file-only"), b"fsynced file", true);
    write_file(&fs.path("data/both"), b"fsynced file and directory", true);
    fsync_dir(&fs.path("data"));
    write_file(&fs.path("data/after"), b"fsynced after the directory", true);

    fs.fs.power_cut();

    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&fs.path("data")), ["both", "file-only"]);
    assert_eq!(
        read(&fs.path("data/both")).as_deref(),
        Some(&b"fsynced file and directory"[..])
    );
    assert_eq!(
        read(&fs.path("data/file-only")).as_deref(),
        Some(&b"fsynced file"[..])
    );
    assert_eq!(read(&fs.path("data/after")), None);
}

#[test]
fn a_rename_is_durable_at_once_under_lazyfs_and_at_the_directory_fsync_otherwise() {
    for (entries, dir_fsync, expected) in [
        (Entries::Immediate, false, "target"),
        (Entries::OnDirectoryFsync, false, "source"),
        (Entries::OnDirectoryFsync, true, "target"),
    ] {
        let Some(fs) = mount(entries) else { return };
        write_file(&fs.path("source"), b"old", true);
        write_file(&fs.path("target"), b"replaced", true);
        fsync_dir(fs.fs.path());
        fs::rename(fs.path("source"), fs.path("target")).expect("rename");
        if dir_fsync {
            fsync_dir(fs.fs.path());
        }
        assert_eq!(read(&fs.path("target")).as_deref(), Some(&b"old"[..]));

        fs.fs.power_cut();

        let what = format!("{entries:?}, directory fsynced: {dir_fsync}");
        let (source, target) = (read(&fs.path("source")), read(&fs.path("target")));
        if expected == "target" {
            assert_eq!(
                (source, target.as_deref()),
                (None, Some(&b"old"[..])),
                "{what}"
            );
        } else {
            let kept = (source.as_deref(), target.as_deref());
            assert_eq!(kept, (Some(&b"old"[..]), Some(&b"replaced"[..])), "{what}");
        }
    }
}

#[test]
fn a_file_held_open_across_a_power_cut_answers_eio() {
    let Some(fs) = mount(Entries::Immediate) else {
        return;
    };
    write_file(&fs.path("held"), b"content", true);
    let mut held = File::open(fs.path("held")).expect("open");

    fs.fs.power_cut();

    let err = held
        .read(&mut [0; 8])
        .expect_err("a handle from before the cut is dead");
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    assert_eq!(read(&fs.path("held")).as_deref(), Some(&b"content"[..]));
}

/// Past SQLite's automatic checkpoint (1,000 WAL pages, about one a commit here), so the WAL
/// is copied into the database file and then restarted from its beginning.
const ROWS: usize = 1500;

/// Writes ROWS rows one commit each under `synchronous` and kills the writer (it exits
/// without closing); cuts the power; returns the rows acknowledged and what a new process
/// finds: the rows there are, the journal mode and SQLite's integrity_check.
fn sqlite_across_a_power_cut(fs: &Mounted, synchronous: &str) -> (usize, u64, String) {
    let db = fs.path("test.db");
    let db = db.to_str().expect("a UTF-8 path");
    let sqlite = env!("CARGO_BIN_EXE_lazyfs_sqlite");
    let rows = ROWS.to_string();
    let written = Command::new(sqlite)
        .args(["write", db, synchronous, &rows])
        .output()
        .expect("run the writer");
    assert!(
        written.status.success(),
        "writer: {}",
        String::from_utf8_lossy(&written.stderr)
    );
    let acknowledged = String::from_utf8_lossy(&written.stdout).lines().count();

    fs.fs.power_cut();

    let counted = Command::new(sqlite)
        .args(["count", db])
        .output()
        .expect("run the counter");
    assert!(
        counted.status.success(),
        "counter: {}",
        String::from_utf8_lossy(&counted.stderr)
    );
    let counted = String::from_utf8_lossy(&counted.stdout).trim().to_owned();
    eprintln!("synchronous={synchronous}: {acknowledged} acknowledged; after the cut: {counted}");
    let (rows, mode_and_integrity) = counted.split_once(' ').expect("ROWS JOURNAL INTEGRITY");
    (
        acknowledged,
        rows.parse().expect("a count"),
        mode_and_integrity.to_owned(),
    )
}

#[test]
fn sqlite_in_wal_mode_with_synchronous_full_keeps_every_acknowledged_row() {
    // Under either rule for entries: SQLite fsyncs the directory when it creates a journal or
    // the WAL, which makes the database file's entry beside them durable too.
    for entries in [Entries::Immediate, Entries::OnDirectoryFsync] {
        let Some(fs) = mount(entries) else {
            return;
        };
        let (acknowledged, kept, integrity) = sqlite_across_a_power_cut(&fs, "full");
        assert_eq!(acknowledged, ROWS, "{entries:?}");
        assert_eq!(kept, ROWS as u64, "{entries:?}");
        assert_eq!(integrity, "wal ok", "{entries:?}");
    }
}

#[test]
fn sqlite_in_wal_mode_without_fsync_loses_acknowledged_rows() {
    // OFF never syncs, so even the table is lost; NORMAL syncs at checkpoints only, so the
    // rows the checkpoint copied stay and those committed after it are lost.
    for (synchronous, at_least) in [("off", 0), ("normal", 1)] {
        let Some(fs) = mount(Entries::Immediate) else {
            return;
        };
        let (acknowledged, kept, integrity) = sqlite_across_a_power_cut(&fs, synchronous);
        assert_eq!(acknowledged, ROWS, "{synchronous}");
        assert!(
            kept < ROWS as u64,
            "{synchronous}: {kept} of {ROWS} kept; the cut lost nothing"
        );
        assert!(kept >= at_least, "{synchronous}: {kept} kept");
        // The WAL header and mode live in the database file, synced or not: a lost table
        // leaves an empty database in the rollback mode a fresh file has.
        assert!(integrity.ends_with(" ok"), "{synchronous}: {integrity}");
    }
}
