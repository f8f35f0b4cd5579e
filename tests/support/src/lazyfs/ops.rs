//! The FUSE requests, each turned into one call on the `Disk` and a reply. What is not here
//! answers ENOSYS, which the kernel takes as "do it yourself" where it can: POSIX locks
//! (SQLite's) are then kept by the kernel, access(2) checks by `default_permissions`.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, INodeNo, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::disk::{Disk, Ino};
use super::{GENERATION, OPEN_FLAGS, TTL, attributes, handle, lock, name_ok, new_node};

pub(super) struct LazyFsOps {
    pub(super) disk: Arc<Mutex<Disk>>,
}

impl LazyFsOps {
    fn entry(&self, result: Result<Ino, Errno>, reply: ReplyEntry) {
        let disk = lock(&self.disk);
        match result.and_then(|ino| Ok((ino, disk.node(ino)?))) {
            Ok((ino, node)) => reply.entry(&TTL, &attributes(ino, node), GENERATION),
            Err(e) => reply.error(e),
        }
    }

    fn attr(&self, ino: Ino, reply: ReplyAttr) {
        match lock(&self.disk).node(ino) {
            Ok(node) => reply.attr(&TTL, &attributes(ino, node)),
            Err(e) => reply.error(e),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        dir: bool,
        mode: (u32, u32),
    ) -> Result<Ino, Errno> {
        name_ok(name)?;
        let new = new_node(dir, mode.0, mode.1, req.uid(), req.gid());
        lock(&self.disk).create(parent.0, name, new, SystemTime::now())
    }
}

fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for LazyFsOps {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = lock(&self.disk).lookup(parent.0, name);
        self.entry(found, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr(ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = {
            let mut disk = lock(&self.disk);
            let now = SystemTime::now();
            fh.map_or(Ok(ino.0), |fh| disk.handle(handle(fh)))
                .and_then(|ino| match size {
                    Some(size) => disk.truncate(ino, size, now),
                    None => Ok(()),
                })
                .and_then(|()| {
                    let perm = mode.map(|m| (m & 0o7777) as u16);
                    disk.set_attributes(ino.0, perm, (uid, gid), mtime.map(time))
                })
        };
        match result {
            Ok(()) => self.attr(ino.0, reply),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.make(req, parent, name, true, (mode, umask));
        self.entry(made, reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let made = self.make(req, parent, name, false, (mode, umask));
        let mut disk = lock(&self.disk);
        let opened = made.and_then(|ino| Ok((ino, disk.open(ino)?)));
        match opened.and_then(|(ino, fh)| Ok((attributes(ino, disk.node(ino)?), fh))) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, GENERATION, FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(lock(&self.disk).remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(lock(&self.disk).remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let renamed = name_ok(newname).and_then(|()| {
            lock(&self.disk).rename((parent.0, name), (newparent.0, newname), no_replace)
        });
        empty(renamed, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match lock(&self.disk).open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let disk = lock(&self.disk);
        match disk
            .handle(handle(fh))
            .and_then(|ino| disk.read(ino, offset, size))
        {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut disk = lock(&self.disk);
        let written = disk
            .handle(handle(fh))
            .and_then(|ino| disk.write(ino, offset, data, SystemTime::now()));
        match written {
            // A write is taken whole or not at all; FUSE's writes are at most 16 MiB.
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) promises nothing about durability; it only must not fail on a live handle.
        empty(lock(&self.disk).handle(handle(fh)).map(|_| ()), reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.disk).release(handle(fh));
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut disk = lock(&self.disk);
        empty(
            disk.handle(handle(fh)).and_then(|ino| disk.sync_file(ino)),
            reply,
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match lock(&self.disk).node(ino.0) {
            Ok(node) if node.is_dir() => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match lock(&self.disk).list(ino.0) {
            Ok(listed) => listed,
            Err(e) => return reply.error(e),
        };
        let dots = [(".".into(), ino.0, true), ("..".into(), ino.0, true)];
        let all = dots.into_iter().chain(listed).enumerate();
        for (i, (name, child, dir)) in all.skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            let kind = if dir {
                fuser::FileType::Directory
            } else {
                fuser::FileType::RegularFile
            };
            // The offset given is the one to resume after this entry.
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: fuser::ReplyStatfs) {
        // Room to spare, as a test's disk has: fuser's default says zero blocks free.
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(lock(&self.disk).sync_dir(ino.0), reply);
    }
}
