//! A named, seekable file read at explicit offsets, so every error can say
//! which file and which byte.

use crate::bytes::ReadAt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file that knows its name and length and reads at absolute offsets,
/// through `&self`: clones and threads share it.
#[derive(Clone, Debug)]
pub struct ArchiveFile<R> {
    inner: R,
    name: PathBuf,
    len: u64,
}

impl<R: ReadAt> ArchiveFile<R> {
    /// Wraps `inner`; `name` is what error messages call it.
    pub fn new(inner: R, name: impl Into<PathBuf>) -> Result<Self> {
        let name = name.into();
        let len = inner.size().map_err(|e| Error::io(&name, None, e))?;
        Ok(ArchiveFile { inner, name, len })
    }

    pub fn name(&self) -> &Path {
        &self.name
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The same file, reading through a reference to its reader.
    pub fn borrowed(&self) -> ArchiveFile<&R> {
        ArchiveFile {
            inner: &self.inner,
            name: self.name.clone(),
            len: self.len,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Fills `buf` from `offset`; a file that ends first is `Truncated`,
    /// reported with `what` was being read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| {
            Error::corrupt(&self.name, offset, format!("{what}: offset overflows"))
        })?;
        if end > self.len {
            return Err(Error::truncated(&self.name, offset, what));
        }
        match self.inner.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            // Shorter than when it was opened: cut while being read.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(Error::truncated(&self.name, offset, what))
            }
            Err(e) => Err(Error::io(&self.name, Some(offset), e)),
        }
    }

    /// Reads `len` bytes at `offset` into a new vector. `len` must already be
    /// checked against limits; it is also checked against the file length
    /// before anything is allocated.
    pub fn read_vec_at(&self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        if offset.saturating_add(len as u64) > self.len {
            return Err(Error::truncated(&self.name, offset, what));
        }
        let mut buf = vec![0u8; len];
        self.read_at(offset, &mut buf, what)?;
        Ok(buf)
    }
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
/// One `read` call may return less than asked for, so loop.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Where the record readers read: an [`ArchiveFile`] at any offset, or a
/// stream read strictly in order.
pub trait RecordSource {
    fn name(&self) -> &Path;
    /// The total length, when known (a stream's is not).
    fn known_len(&self) -> Option<u64>;
    fn read_at(&mut self, offset: u64, buf: &mut [u8], what: &str) -> Result<()>;
    /// Reads `len` bytes at `offset`; `len` is already checked against limits.
    fn read_vec_at(&mut self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>>;
}

impl<R: ReadAt> RecordSource for &ArchiveFile<R> {
    fn name(&self) -> &Path {
        ArchiveFile::name(*self)
    }
    fn known_len(&self) -> Option<u64> {
        Some(self.len)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        ArchiveFile::read_at(*self, offset, buf, what)
    }
    fn read_vec_at(&mut self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        ArchiveFile::read_vec_at(*self, offset, len, what)
    }
}

/// A stream (such as standard input) read front to back. Reads must come
/// in file order; the offset of each is checked against the position.
#[derive(Debug)]
pub struct StreamFile<R> {
    inner: R,
    name: PathBuf,
    pos: u64,
}

impl<R: Read> StreamFile<R> {
    pub fn new(inner: R, name: impl Into<PathBuf>) -> Self {
        StreamFile {
            inner,
            name: name.into(),
            pos: 0,
        }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Counts `n` bytes consumed through `get_mut`.
    pub fn advance(&mut self, n: u64) {
        self.pos += n;
    }

    /// True when the stream has no more bytes.
    pub fn at_end(&mut self) -> Result<bool> {
        let mut b = [0u8; 1];
        match read_full(&mut self.inner, &mut b) {
            Ok(0) => Ok(true),
            Ok(_) => Err(Error::corrupt(
                &self.name,
                self.pos,
                "bytes after the end of the image",
            )),
            Err(e) => Err(Error::io(&self.name, Some(self.pos), e)),
        }
    }
}

impl<R: Read> RecordSource for StreamFile<R> {
    fn name(&self) -> &Path {
        &self.name
    }
    fn known_len(&self) -> Option<u64> {
        None
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        if offset != self.pos {
            return Err(Error::corrupt(
                &self.name,
                self.pos,
                format!(
                    "{what} is expected at byte {offset}, but the stream is at {}",
                    self.pos
                ),
            ));
        }
        let n =
            read_full(&mut self.inner, buf).map_err(|e| Error::io(&self.name, Some(offset), e))?;
        self.pos += n as u64;
        if n < buf.len() {
            return Err(Error::truncated(&self.name, offset, what));
        }
        Ok(())
    }
    fn read_vec_at(&mut self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        RecordSource::read_at(self, offset, &mut v, what)?;
        Ok(v)
    }
}

/// A writer that knows its name and how many bytes went through it, so
/// every write error says which file and which byte.
#[derive(Debug)]
pub(crate) struct NamedWriter<W> {
    pub inner: W,
    pub name: PathBuf,
    /// Bytes written so far: the offset of the next byte.
    pub pos: u64,
}

impl<W: std::io::Write> NamedWriter<W> {
    pub fn new(inner: W, name: PathBuf) -> Self {
        NamedWriter {
            inner,
            name,
            pos: 0,
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|e| Error::io(&self.name, Some(self.pos), e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.inner
            .flush()
            .map_err(|e| Error::io(&self.name, Some(self.pos), e))
    }
}
