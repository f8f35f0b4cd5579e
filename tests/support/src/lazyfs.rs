//! A filesystem that loses power: Jepsen's LazyFS, in memory, over FUSE (`fuser`, mounting
//! with the mount(2) system call as root, so no libfuse or fusermount is needed).
//!
//! Every write lands in a cache that reads see; fsync makes a file's content durable;
//! `LazyFs::power_cut` drops everything not fsynced, as the machine losing power and booting
//! again would, while the filesystem stays mounted. When directory entries become durable is
//! `Entries` (`disk.rs`): at once by default, as under LazyFS, or only at the directory's fsync.
//!
//! `power_cut` is for a filesystem no process holds files open on (kill the server first): a
//! handle opened before the cut answers EIO to what reaches the filesystem afterwards, but the
//! kernel answers some calls itself (a read past the end of a file the cut made shorter is
//! EOF), and a mapping made before it (SQLite's `-shm`) may keep showing old pages. The
//! kernel's caches are turned off (no attribute or entry caching, page cache dropped at every
//! open) and invalidated at the cut, so what a new open sees is the durable state.
//!
//! Regular files and directories only: no symlinks, hard links, device nodes or extended
//! attributes. POSIX locks are the kernel's own (the filesystem does not take them over), so
//! SQLite's locking works as on a local disk, and so does its WAL with the `-shm` file mapped
//! shared (tests/lazyfs.rs).

mod content;
mod disk;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation,
    INodeNo, MountOption, Notifier,
};

pub use disk::Entries;
use disk::{Body, Disk, NewNode, Node};

mod ops;

/// Why this machine cannot mount a FUSE filesystem, if it cannot: no `/dev/fuse`, or not
/// root (mounting without fusermount takes CAP_SYS_ADMIN).
pub fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0");
    (!root).then(|| "mounting FUSE without fusermount needs root".into())
}

/// A mounted power-loss filesystem; unmounted when dropped.
pub struct LazyFs {
    mountpoint: PathBuf,
    disk: Arc<Mutex<Disk>>,
    session: Option<BackgroundSession>,
    notifier: Notifier,
}

impl LazyFs {
    /// Mounts an empty filesystem on `dir` (an existing, empty directory), with LazyFS's
    /// directory entries: durable as soon as they are made.
    pub fn mount(dir: &Path) -> io::Result<LazyFs> {
        LazyFs::mount_with(dir, Entries::Immediate)
    }

    pub fn mount_with(dir: &Path, entries: Entries) -> io::Result<LazyFs> {
        let disk = Arc::new(Mutex::new(Disk::new(entries, SystemTime::now())));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(ops::LazyFsOps { disk: disk.clone() }, dir, &config)?;
        let notifier = session.notifier();
        Ok(LazyFs {
            mountpoint: dir.to_owned(),
            disk,
            session: Some(session),
            notifier,
        })
    }

    /// Where it is mounted, to put the data directory under.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Loses every write not fsynced (see the module doc for what an open file sees).
    pub fn power_cut(&self) {
        let (inodes, entries) = lock(&self.disk).power_cut();
        // Outside the lock: the kernel may call back into the filesystem while invalidating.
        // ENOENT only says the kernel had nothing cached, which is the point.
        for (parent, name) in entries {
            let _ = self.notifier.inval_entry(INodeNo(parent), &name);
        }
        for ino in inodes {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, -1);
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && let Err(e) = session.umount_and_join()
        {
            // Busy, or the filesystem's thread is gone: detach the mount all the same, so that
            // no dead mount ("Transport endpoint is not connected") outlives the test.
            let detached = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
            eprintln!(
                "unmounting the LazyFS at {}: {e}; umount -l: {detached:?}",
                self.mountpoint.display()
            );
        }
    }
}

/// The disk behind the mutex; a panic in a handler cannot leave it half-changed in a way
/// later tests would trip on (each test mounts its own), so a poisoned lock is taken as is.
fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Nothing is cached by the kernel: after a power cut every lookup and stat comes back here.
const TTL: Duration = Duration::ZERO;

fn attributes(ino: u64, node: &Node) -> FileAttr {
    let (kind, size, nlink) = match &node.body {
        Body::File(content) => (FileType::RegularFile, content.len() as u64, 1),
        Body::Dir(_) => (FileType::Directory, 0, 2),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.mtime,
        mtime: node.mtime,
        ctime: node.ctime,
        crtime: node.ctime,
        kind,
        perm: node.perm,
        nlink,
        uid: node.uid,
        gid: node.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Opened files keep no kernel page cache from one open to the next (no FOPEN_KEEP_CACHE),
/// so a file reopened after a power cut is read from here.
const OPEN_FLAGS: FopenFlags = FopenFlags::empty();
const GENERATION: Generation = Generation(0);

fn new_node(dir: bool, mode: u32, umask: u32, uid: u32, gid: u32) -> NewNode {
    NewNode {
        dir,
        perm: (mode & !umask & 0o7777) as u16,
        uid,
        gid,
    }
}

fn name_ok(name: &OsStr) -> Result<(), Errno> {
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

fn handle(fh: FileHandle) -> u64 {
    fh.0
}

/// Mounts on `dir` for a test, or says why it cannot and returns None; under CI (`CI` set),
/// where `.ci/run` runs as root, a missing /dev/fuse or root is a failure, not a skip.
pub fn mount_or_skip(dir: &Path, entries: Entries) -> Option<LazyFs> {
    if !crate::runs_here("the LazyFS tests", fuse_unavailable()) {
        return None;
    }
    Some(LazyFs::mount_with(dir, entries).expect("mount the LazyFS"))
}
