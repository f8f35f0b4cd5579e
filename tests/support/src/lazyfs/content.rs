//! A file's bytes as shared pages, so that fsync is cheap: the durable copy shares every page
//! with the cached one, and a write copies only the pages it changes. Copying whole files
//! instead would cost a server's WAL (megabytes) at every commit.

use std::sync::Arc;

const PAGE: usize = 4096;

/// Bytes past `len` in the last page are always zero, so growing the file shows zeros.
#[derive(Clone, Debug, Default)]
pub struct Content {
    len: usize,
    pages: Vec<Arc<[u8; PAGE]>>,
}

impl Content {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Up to `size` bytes from `offset`, fewer at the end of the file.
    pub fn read(&self, offset: usize, size: usize) -> Vec<u8> {
        let end = offset.saturating_add(size).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset));
        let mut at = offset;
        while at < end {
            let (page, within) = (at / PAGE, at % PAGE);
            let take = (PAGE - within).min(end - at);
            out.extend_from_slice(&self.pages[page][within..within + take]);
            at += take;
        }
        out
    }

    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if end > self.len {
            self.resize(end);
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let (page, within) = (at / PAGE, at % PAGE);
            let take = (PAGE - within).min(data.len() - done);
            Arc::make_mut(&mut self.pages[page])[within..within + take]
                .copy_from_slice(&data[done..done + take]);
            done += take;
        }
    }

    pub fn resize(&mut self, len: usize) {
        if len < self.len {
            self.pages.truncate(len.div_ceil(PAGE));
            if !len.is_multiple_of(PAGE)
                && let Some(last) = self.pages.last_mut()
            {
                Arc::make_mut(last)[len % PAGE..].fill(0);
            }
        }
        self.pages
            .resize_with(len.div_ceil(PAGE), || Arc::new([0; PAGE]));
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_writes_across_pages_when_read_then_the_bytes_are_where_they_were_written() {
        let mut content = Content::default();
        content.write(PAGE - 2, b"abcd");
        content.write(3 * PAGE, b"z");

        assert_eq!(content.len(), 3 * PAGE + 1);
        assert_eq!(content.read(PAGE - 3, 6), b"\0abcd\0");
        assert_eq!(content.read(3 * PAGE, 10), b"z");
        assert_eq!(content.read(10 * PAGE, 10), b"");
    }

    #[test]
    fn given_a_shrunk_file_when_it_grows_again_then_the_cut_bytes_read_as_zeros() {
        let mut content = Content::default();
        content.write(0, b"0123456789");
        content.resize(4);
        content.resize(8);

        assert_eq!(content.read(0, 100), b"0123\0\0\0\0");
    }

    #[test]
    fn given_a_copy_when_the_original_is_written_then_the_copy_keeps_its_bytes() {
        let mut content = Content::default();
        content.write(0, &[1; PAGE + 1]);
        let synced = content.clone();

        content.write(PAGE, b"\x02\x02");
        content.resize(1);

        assert_eq!(synced.read(PAGE - 1, 3), [1, 1]);
        assert_eq!(content.read(0, 10), [1]);
    }
}
