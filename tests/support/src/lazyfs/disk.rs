//! The two layers of the power-loss filesystem, with no FUSE in them: what every write made
//! (`cached`, which reads see) and what the last fsyncs made (`durable`, which a power cut
//! leaves). Both are maps from inode number to node, sharing inode numbers, so a file's
//! durable content follows it through renames.
//!
//! File content is durable as of the file's last fsync (or fdatasync: both copy everything),
//! and so are its size and modification time; its mode and owner too, under `OnDirectoryFsync`.
//! Directory entries (create, unlink, mkdir, rmdir, rename) follow `Entries`: LazyFS passes
//! them straight to its backing filesystem, so there they are durable at once and only file
//! data is lost; `OnDirectoryFsync` is the stricter POSIX reading, where an entry is durable
//! only once its directory is fsynced (a file fsynced but never linked by a directory fsync
//! is gone after the cut).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::Errno;

use super::content::Content;

pub type Ino = u64;
/// Larger files are refused (EFBIG) rather than allocated: memory is the disk here, and a
/// panic in the filesystem's thread would leave the mount dead.
const MAX_FILE: usize = 1 << 32;
/// FUSE's inode number of the mount's root.
pub const ROOT: Ino = 1;

/// When a directory entry becomes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entries {
    /// As soon as it is made, as under LazyFS, which forwards create, unlink, mkdir, rmdir,
    /// rename, chmod and chown to its backing filesystem and caches only file data.
    Immediate,
    /// At the next fsync of its directory, and not before (POSIX's promise, ext4's worst case).
    OnDirectoryFsync,
}

#[derive(Clone, Debug)]
pub enum Body {
    File(Content),
    Dir(BTreeMap<OsString, Ino>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub body: Body,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Node {
    fn new(body: Body, perm: u16, uid: u32, gid: u32, now: SystemTime) -> Node {
        Node {
            body,
            perm,
            uid,
            gid,
            mtime: now,
            ctime: now,
        }
    }

    /// The same node as it is first made durable by its directory's fsync: attributes, but
    /// no content or entries, which need fsyncs of their own.
    fn unsynced_twin(&self) -> Node {
        let body = match self.body {
            Body::File(_) => Body::File(Content::default()),
            Body::Dir(_) => Body::Dir(BTreeMap::new()),
        };
        Node {
            body,
            ..self.clone()
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }
}

type Layer = HashMap<Ino, Node>;

/// Both layers, the open file handles, and the counters that never go back.
pub struct Disk {
    cached: Layer,
    durable: Layer,
    entries: Entries,
    /// Inode numbers and handles are never reused, even across a power cut, so that the
    /// kernel's stale ones can never name something new.
    next_ino: Ino,
    next_fh: u64,
    handles: HashMap<u64, Ino>,
}

/// What a new node is: a file or a directory, with its mode bits and owner.
pub struct NewNode {
    pub dir: bool,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

impl Disk {
    pub fn new(entries: Entries, now: SystemTime) -> Disk {
        let root = Node::new(Body::Dir(BTreeMap::new()), 0o755, 0, 0, now);
        let layer: Layer = HashMap::from([(ROOT, root)]);
        Disk {
            cached: layer.clone(),
            durable: layer,
            entries,
            next_ino: ROOT + 1,
            next_fh: 1,
            handles: HashMap::new(),
        }
    }

    pub fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.cached.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.cached.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<OsString, Ino>, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(entries) => Ok(entries),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// The entries of a directory, in name order, for readdir.
    pub fn list(&self, dir: Ino) -> Result<Vec<(OsString, Ino, bool)>, Errno> {
        let entries = self.dir(dir)?;
        Ok(entries
            .iter()
            .map(|(name, ino)| {
                (
                    name.clone(),
                    *ino,
                    self.cached.get(ino).is_some_and(Node::is_dir),
                )
            })
            .collect())
    }

    pub fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new: NewNode,
        now: SystemTime,
    ) -> Result<Ino, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = if new.dir {
            Body::Dir(BTreeMap::new())
        } else {
            Body::File(Content::default())
        };
        let node = Node::new(body, new.perm, new.uid, new.gid, now);
        if self.entries == Entries::Immediate {
            self.durable.insert(ino, node.unsynced_twin());
        }
        self.cached.insert(ino, node);
        self.link(parent, name, Some(ino));
        Ok(ino)
    }

    /// Sets (or with `None` removes) an entry in the cached layer, and in the durable one too
    /// when entries are durable at once.
    fn link(&mut self, parent: Ino, name: &OsStr, ino: Option<Ino>) {
        let mut layers = vec![&mut self.cached];
        if self.entries == Entries::Immediate {
            layers.push(&mut self.durable);
        }
        for layer in layers {
            if let Some(Node {
                body: Body::Dir(entries),
                ..
            }) = layer.get_mut(&parent)
            {
                match ino {
                    Some(ino) => entries.insert(name.to_owned(), ino),
                    None => entries.remove(name),
                };
            }
        }
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let node = self.node(ino)?;
        match (&node.body, dir) {
            (Body::File(_), true) => return Err(Errno::ENOTDIR),
            (Body::Dir(_), false) => return Err(Errno::EISDIR),
            (Body::Dir(entries), true) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.link(parent, name, None);
        self.forget_if_orphan(ino);
        Ok(())
    }

    pub fn rename(
        &mut self,
        from: (Ino, &OsStr),
        to: (Ino, &OsStr),
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(from.0, from.1)?;
        self.dir(to.0)?;
        let moving_dir = self.node(ino)?.is_dir();
        let replaced = self.lookup(to.0, to.1).ok();
        if let Some(old) = replaced {
            if no_replace {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            match (&self.node(old)?.body, moving_dir) {
                (Body::Dir(_), false) => return Err(Errno::EISDIR),
                (Body::File(_), true) => return Err(Errno::ENOTDIR),
                (Body::Dir(entries), true) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.link(from.0, from.1, None);
        self.link(to.0, to.1, Some(ino));
        if let Some(old) = replaced {
            self.forget_if_orphan(old);
        }
        Ok(())
    }

    /// Drops a cached node that no entry names and no handle holds (an unlinked file stays
    /// readable through the handles still open on it, as POSIX has it).
    fn forget_if_orphan(&mut self, ino: Ino) {
        let named = self.cached.values().any(|node| match &node.body {
            Body::Dir(entries) => entries.values().any(|&child| child == ino),
            Body::File(_) => false,
        });
        if !named && !self.handles.values().any(|&open| open == ino) {
            self.cached.remove(&ino);
        }
    }

    pub fn open(&mut self, ino: Ino) -> Result<u64, Errno> {
        if self.node(ino)?.is_dir() {
            return Err(Errno::EISDIR);
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// The inode an open handle is on; EIO for a handle opened before a power cut, whose
    /// process "died" with the machine.
    pub fn handle(&self, fh: u64) -> Result<Ino, Errno> {
        self.handles.get(&fh).copied().ok_or(Errno::EIO)
    }

    pub fn release(&mut self, fh: u64) {
        if let Some(ino) = self.handles.remove(&fh) {
            self.forget_if_orphan(ino);
        }
    }

    fn content_mut(&mut self, ino: Ino) -> Result<&mut Content, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::File(content) => Ok(content),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let Body::File(content) = &self.node(ino)?.body else {
            return Err(Errno::EISDIR);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(content.read(start, size as usize))
    }

    pub fn write(
        &mut self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        now: SystemTime,
    ) -> Result<(), Errno> {
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        if start.saturating_add(data.len()) > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        self.content_mut(ino)?.write(start, data);
        self.node_mut(ino)?.mtime = now;
        Ok(())
    }

    pub fn truncate(&mut self, ino: Ino, size: u64, now: SystemTime) -> Result<(), Errno> {
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= MAX_FILE)
            .ok_or(Errno::EFBIG)?;
        self.content_mut(ino)?.resize(size);
        self.node_mut(ino)?.mtime = now;
        Ok(())
    }

    pub fn set_attributes(
        &mut self,
        ino: Ino,
        perm: Option<u16>,
        owner: (Option<u32>, Option<u32>),
        mtime: Option<SystemTime>,
    ) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        node.perm = perm.unwrap_or(node.perm);
        node.uid = owner.0.unwrap_or(node.uid);
        node.gid = owner.1.unwrap_or(node.gid);
        node.mtime = mtime.unwrap_or(node.mtime);
        // LazyFS passes chmod and chown to its backing filesystem, as it does entries.
        if self.entries == Entries::Immediate
            && let Some(durable) = self.durable.get_mut(&ino)
        {
            durable.perm = perm.unwrap_or(durable.perm);
            durable.uid = owner.0.unwrap_or(durable.uid);
            durable.gid = owner.1.unwrap_or(durable.gid);
        }
        Ok(())
    }

    /// fsync or fdatasync of a file: its content and attributes become durable (not its
    /// entry, under `OnDirectoryFsync`).
    pub fn sync_file(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.node(ino)?.clone();
        if node.is_dir() {
            return self.sync_dir(ino);
        }
        self.durable.insert(ino, node);
        Ok(())
    }

    /// fsync of a directory: its entries become durable; a child not yet durable becomes so
    /// without content (a file's content needs its own fsync).
    pub fn sync_dir(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.node(ino)?.clone();
        let Body::Dir(entries) = &node.body else {
            return Err(Errno::ENOTDIR);
        };
        for child in entries.values() {
            if !self.durable.contains_key(child) {
                let twin = self.node(*child)?.unsynced_twin();
                self.durable.insert(*child, twin);
            }
        }
        let kept = match self.durable.get(&ino).map(|d| &d.body) {
            // Under `Immediate` the durable entries are already the cached ones.
            Some(Body::Dir(durable)) if self.entries == Entries::Immediate => durable.clone(),
            _ => entries.clone(),
        };
        self.durable.insert(
            ino,
            Node {
                body: Body::Dir(kept),
                ..node
            },
        );
        Ok(())
    }

    /// Loses power: the cached layer becomes what is durable and reachable from the root,
    /// and every open handle is dead. Returns every inode and entry the kernel may still
    /// have cached, to be invalidated.
    pub fn power_cut(&mut self) -> (Vec<Ino>, Vec<(Ino, OsString)>) {
        let inodes = self.cached.keys().copied().collect();
        let entries = self
            .cached
            .iter()
            .flat_map(|(ino, node)| match &node.body {
                Body::Dir(entries) => entries.keys().map(|name| (*ino, name.clone())).collect(),
                Body::File(_) => Vec::new(),
            })
            .collect();
        let reachable = reachable(&self.durable);
        self.durable.retain(|ino, _| reachable.contains(ino));
        for node in self.durable.values_mut() {
            if let Body::Dir(entries) = &mut node.body {
                entries.retain(|_, child| reachable.contains(child));
            }
        }
        self.cached = self.durable.clone();
        self.handles.clear();
        (inodes, entries)
    }
}

/// The inodes a walk from the root reaches through entries whose target is in the layer.
fn reachable(layer: &Layer) -> HashSet<Ino> {
    let mut seen = HashSet::from([ROOT]);
    let mut stack = vec![ROOT];
    while let Some(ino) = stack.pop() {
        if let Some(Node {
            body: Body::Dir(entries),
            ..
        }) = layer.get(&ino)
        {
            for child in entries.values() {
                if layer.contains_key(child) && seen.insert(*child) {
                    stack.push(*child);
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: NewNode = NewNode {
        dir: false,
        perm: 0o644,
        uid: 0,
        gid: 0,
    };
    const DIR: NewNode = NewNode {
        dir: true,
        perm: 0o755,
        uid: 0,
        gid: 0,
    };

    fn disk(entries: Entries) -> Disk {
        Disk::new(entries, SystemTime::UNIX_EPOCH)
    }

    fn file(disk: &mut Disk, parent: Ino, name: &str, content: &[u8]) -> Ino {
        let ino = disk
            .create(parent, OsStr::new(name), FILE, SystemTime::UNIX_EPOCH)
            .unwrap();
        disk.write(ino, 0, content, SystemTime::UNIX_EPOCH).unwrap();
        ino
    }

    fn content(disk: &Disk, parent: Ino, name: &str) -> Option<Vec<u8>> {
        let ino = disk.lookup(parent, OsStr::new(name)).ok()?;
        Some(disk.read(ino, 0, u32::MAX).unwrap())
    }

    #[test]
    fn given_a_synced_then_overwritten_file_when_power_is_cut_then_the_synced_content_is_back() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"first");
        disk.sync_file(ino).unwrap();
        disk.write(ino, 2, b"-changed", SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(content(&disk, ROOT, "f").unwrap(), b"fi-changed");

        disk.power_cut();

        assert_eq!(content(&disk, ROOT, "f").unwrap(), b"first");
    }

    #[test]
    fn given_a_truncated_file_not_synced_when_power_is_cut_then_its_length_is_back() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"0123456789");
        disk.sync_file(ino).unwrap();
        disk.truncate(ino, 3, SystemTime::UNIX_EPOCH).unwrap();

        disk.power_cut();

        assert_eq!(content(&disk, ROOT, "f").unwrap(), b"0123456789");
    }

    #[test]
    fn given_entries_on_directory_fsync_when_a_subdirectory_was_synced_but_not_its_parent_then_both_are_gone()
     {
        let mut disk = disk(Entries::OnDirectoryFsync);
        let sub = disk
            .create(ROOT, OsStr::new("sub"), DIR, SystemTime::UNIX_EPOCH)
            .unwrap();
        let ino = file(&mut disk, sub, "f", b"data");
        disk.sync_file(ino).unwrap();
        disk.sync_dir(sub).unwrap();

        disk.power_cut();

        assert_eq!(disk.lookup(ROOT, OsStr::new("sub")), Err(Errno::ENOENT));
        assert!(disk.list(ROOT).unwrap().is_empty());
    }

    #[test]
    fn given_an_unlinked_file_still_open_when_it_is_read_then_its_content_is_there_until_release() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"held");
        let fh = disk.open(ino).unwrap();
        disk.remove(ROOT, OsStr::new("f"), false).unwrap();
        assert_eq!(disk.read(disk.handle(fh).unwrap(), 0, 10).unwrap(), b"held");

        disk.release(fh);

        assert_eq!(disk.node(ino).err(), Some(Errno::ENOENT));
    }

    #[test]
    fn given_lazyfs_entries_when_a_never_synced_file_is_chmodded_then_the_mode_survives_the_cut() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"lost");
        disk.set_attributes(ino, Some(0o600), (None, None), None)
            .unwrap();

        disk.power_cut();

        assert_eq!(disk.node(ino).unwrap().perm, 0o600);
        assert_eq!(content(&disk, ROOT, "f").unwrap(), b"");
    }

    #[test]
    fn given_a_write_or_truncate_past_4_gib_when_asked_then_efbig_and_nothing_allocated() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"x");

        assert_eq!(
            disk.write(ino, 1 << 40, b"y", SystemTime::UNIX_EPOCH),
            Err(Errno::EFBIG)
        );
        assert_eq!(
            disk.truncate(ino, u64::MAX, SystemTime::UNIX_EPOCH),
            Err(Errno::EFBIG)
        );
        assert_eq!(content(&disk, ROOT, "f").unwrap(), b"x");
    }

    #[test]
    fn given_a_handle_from_before_a_power_cut_when_it_is_used_then_it_is_eio() {
        let mut disk = disk(Entries::Immediate);
        let ino = file(&mut disk, ROOT, "f", b"x");
        let fh = disk.open(ino).unwrap();

        disk.power_cut();

        assert_eq!(disk.handle(fh), Err(Errno::EIO));
        assert!(disk.open(ino).unwrap() > fh, "handles are never reused");
    }

    #[test]
    fn given_a_non_empty_directory_when_it_is_removed_or_replaced_then_enotempty() {
        let mut disk = disk(Entries::Immediate);
        let full = disk
            .create(ROOT, OsStr::new("full"), DIR, SystemTime::UNIX_EPOCH)
            .unwrap();
        file(&mut disk, full, "f", b"");
        disk.create(ROOT, OsStr::new("empty"), DIR, SystemTime::UNIX_EPOCH)
            .unwrap();

        assert_eq!(
            disk.remove(ROOT, OsStr::new("full"), true),
            Err(Errno::ENOTEMPTY)
        );
        let onto_full = disk.rename(
            (ROOT, OsStr::new("empty")),
            (ROOT, OsStr::new("full")),
            false,
        );
        assert_eq!(onto_full, Err(Errno::ENOTEMPTY));
        assert_eq!(
            disk.remove(ROOT, OsStr::new("full"), false),
            Err(Errno::EISDIR)
        );
    }
}
