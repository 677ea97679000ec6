//! One connection: the fixed-newstyle handshake, then transmission, processed in order.

use crate::proto::*;
use crate::{Errno, Error, Export, ExportSet, Result, ServerLimits, STATE_ZERO};
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

/// Serves one client on `stream` until it disconnects. `Ok` for a disconnect at a message boundary (with or
/// without NBD_CMD_DISC / NBD_OPT_ABORT); `Err` for a broken stream or a client that broke the protocol, after
/// which the stream must just be closed.
pub fn serve(
    stream: impl Read + Write,
    exports: &dyn ExportSet,
    limits: &ServerLimits,
) -> Result<()> {
    let mut conn = Conn {
        stream,
        out: Vec::with_capacity(256),
    };
    let Some(session) = handshake(&mut conn, exports, limits)? else {
        return Ok(());
    };
    transmission(&mut conn, session, limits)
}

struct Conn<S> {
    stream: S,
    /// Reply bytes not yet sent: a reply leaves in one write where it can.
    out: Vec<u8>,
}

impl<S: Read + Write> Conn<S> {
    fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        self.stream
            .read_exact(buf)
            .map_err(|source| Error::Io { what, source })
    }

    /// Like `read_exact`, but `Ok(false)` when the stream ends before the first byte: a client may hang up
    /// between messages.
    fn read_first(&mut self, buf: &mut [u8], what: &'static str) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.stream.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    let source = std::io::Error::from(ErrorKind::UnexpectedEof);
                    return Err(Error::Io { what, source });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if got == 0 && is_hangup(&e) => return Ok(false),
                Err(source) => return Err(Error::Io { what, source }),
            }
        }
        Ok(true)
    }

    /// Reads and drops `len` bytes without holding them.
    fn skip(&mut self, mut len: u64, what: &'static str) -> Result<()> {
        let mut scratch = [0u8; 4096];
        while len > 0 {
            let n = len.min(scratch.len() as u64) as usize;
            self.read_exact(&mut scratch[..n], what)?;
            len -= n as u64;
        }
        Ok(())
    }

    fn send(&mut self, tail: &[u8]) -> Result<()> {
        let what = "sending a reply";
        self.stream
            .write_all(&self.out)
            .map_err(|source| Error::Io { what, source })?;
        self.out.clear();
        self.stream
            .write_all(tail)
            .map_err(|source| Error::Io { what, source })?;
        self.stream
            .flush()
            .map_err(|source| Error::Io { what, source })
    }

    fn opt_reply(&mut self, option: u32, kind: u32, data: &[u8]) -> Result<()> {
        self.out.extend_from_slice(&REPLY_MAGIC_OPT.to_be_bytes());
        self.out.extend_from_slice(&option.to_be_bytes());
        self.out.extend_from_slice(&kind.to_be_bytes());
        // Our replies are short (names ≤ option_len, fixed infos).
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(data);
        self.send(&[])
    }
}

fn is_hangup(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
    )
}

fn protocol(what: impl Into<String>) -> Error {
    Error::Protocol { what: what.into() }
}

/// What the handshake settled.
struct Session {
    export: Arc<dyn Export>,
    structured: bool,
    base_allocation: bool,
}

/// A metadata context selection, valid for the export it was made for.
struct MetaChoice {
    export: String,
    base_allocation: bool,
}

fn transmission_flags(export: &dyn Export) -> u16 {
    let mut flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA;
    if export.read_only() {
        flags |= TFLAG_READ_ONLY;
    } else {
        flags |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
    }
    if export.multi_conn() {
        flags |= TFLAG_CAN_MULTI_CONN;
    }
    flags
}

fn handshake<S: Read + Write>(
    conn: &mut Conn<S>,
    exports: &dyn ExportSet,
    limits: &ServerLimits,
) -> Result<Option<Session>> {
    conn.out.extend_from_slice(&NBDMAGIC.to_be_bytes());
    conn.out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    conn.out
        .extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    conn.send(&[])?;
    let mut word = [0u8; 4];
    if !conn.read_first(&mut word, "reading the client flags")? {
        return Ok(None);
    }
    let client_flags = u32::from_be_bytes(word);
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(protocol(format!("unknown client flags {client_flags:#x}")));
    }
    if client_flags & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(protocol("a client without fixed newstyle"));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;

    let mut structured = false;
    let mut meta: Option<MetaChoice> = None;
    for _ in 0..limits.options {
        let mut head = [0u8; 16];
        if !conn.read_first(&mut head, "reading an option")? {
            return Ok(None);
        }
        let magic = u64::from_be_bytes(head[0..8].try_into().expect("8 bytes"));
        if magic != IHAVEOPT {
            return Err(protocol(format!("option magic {magic:#018x}")));
        }
        let option = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
        if len > limits.option_len {
            if len > limits.option_skip || option == OPT_EXPORT_NAME {
                // EXPORT_NAME has no error reply: the spec's answer to a refused one is to close.
                return Err(protocol(format!("option {option} of {len} bytes")));
            }
            conn.skip(u64::from(len), "skipping an oversized option")?;
            conn.opt_reply(option, REP_ERR_TOO_BIG, b"option too long")?;
            continue;
        }
        // Bounded by option_len just above.
        let mut data = vec![0u8; len as usize];
        conn.read_exact(&mut data, "reading option data")?;
        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                let Some(export) = exports.get(&name) else {
                    return Err(protocol(format!(
                        "NBD_OPT_EXPORT_NAME of unknown export {name:?}"
                    )));
                };
                let flags = transmission_flags(&*export);
                conn.out.extend_from_slice(&export.size().to_be_bytes());
                conn.out.extend_from_slice(&flags.to_be_bytes());
                if !no_zeroes {
                    conn.out.extend_from_slice(&[0u8; 124]);
                }
                conn.send(&[])?;
                let base_allocation = selected(&meta, &name);
                return Ok(Some(Session {
                    export,
                    structured,
                    base_allocation,
                }));
            }
            OPT_ABORT => {
                // The client may already have closed; the ACK is a courtesy.
                let _ = conn.opt_reply(option, REP_ACK, &[]);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    conn.opt_reply(option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                    continue;
                }
                for name in exports.names() {
                    let mut reply = Vec::with_capacity(4 + name.len());
                    reply.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    reply.extend_from_slice(name.as_bytes());
                    conn.opt_reply(option, REP_SERVER, &reply)?;
                }
                conn.opt_reply(option, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    conn.opt_reply(
                        option,
                        REP_ERR_INVALID,
                        b"NBD_OPT_STRUCTURED_REPLY takes no data",
                    )?;
                    continue;
                }
                structured = true;
                conn.opt_reply(option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(name) = parse_info(&data) else {
                    conn.opt_reply(option, REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO")?;
                    continue;
                };
                let Some(export) = exports.get(&name) else {
                    conn.opt_reply(option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                };
                let flags = transmission_flags(&*export);
                let mut info = Vec::with_capacity(12);
                info.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                info.extend_from_slice(&export.size().to_be_bytes());
                info.extend_from_slice(&flags.to_be_bytes());
                conn.opt_reply(option, REP_INFO, &info)?;
                let mut info = Vec::with_capacity(14);
                info.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                info.extend_from_slice(&BLOCK_MIN.to_be_bytes());
                info.extend_from_slice(&BLOCK_PREFERRED.to_be_bytes());
                info.extend_from_slice(&limits.request_len.min(BLOCK_MAX).to_be_bytes());
                conn.opt_reply(option, REP_INFO, &info)?;
                conn.opt_reply(option, REP_ACK, &[])?;
                if option == OPT_GO {
                    let base_allocation = selected(&meta, &name);
                    return Ok(Some(Session {
                        export,
                        structured,
                        base_allocation,
                    }));
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                if set && !structured {
                    conn.opt_reply(option, REP_ERR_INVALID, b"structured replies first")?;
                    continue;
                }
                let Some((name, queries)) = parse_meta(&data) else {
                    conn.opt_reply(option, REP_ERR_INVALID, b"malformed meta context request")?;
                    continue;
                };
                if exports.get(&name).is_none() {
                    conn.opt_reply(option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                // SET: only the exact name selects; LIST: no query, "base:" or the name lists it.
                let matches = if set {
                    queries.iter().any(|q| q == BASE_ALLOCATION)
                } else {
                    queries.is_empty()
                        || queries.iter().any(|q| q == BASE_ALLOCATION || q == "base:")
                };
                if matches {
                    let mut reply = Vec::with_capacity(4 + BASE_ALLOCATION.len());
                    let id = if set { BASE_ALLOCATION_ID } else { 0 };
                    reply.extend_from_slice(&id.to_be_bytes());
                    reply.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    conn.opt_reply(option, REP_META_CONTEXT, &reply)?;
                }
                if set {
                    meta = Some(MetaChoice {
                        export: name,
                        base_allocation: matches,
                    });
                }
                conn.opt_reply(option, REP_ACK, &[])?;
            }
            _ => conn.opt_reply(option, REP_ERR_UNSUP, b"option not supported")?,
        }
    }
    Err(protocol(format!("more than {} options", limits.options)))
}

fn selected(meta: &Option<MetaChoice>, export: &str) -> bool {
    meta.as_ref()
        .is_some_and(|m| m.base_allocation && m.export == export)
}

/// Reads big-endian integers and strings off option data; `None` past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// A u32 length then that many bytes of UTF-8.
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// NBD_OPT_INFO/GO data: the export name (the information requests are answered all the same).
fn parse_info(data: &[u8]) -> Option<String> {
    let mut f = Fields(data);
    let name = f.string()?;
    let requests = usize::from(f.u16()?);
    f.take(requests.checked_mul(2)?)?;
    f.0.is_empty().then_some(name)
}

/// NBD_OPT_{LIST,SET}_META_CONTEXT data: the export name and the queries.
fn parse_meta(data: &[u8]) -> Option<(String, Vec<String>)> {
    let mut f = Fields(data);
    let name = f.string()?;
    let count = f.u32()?;
    let mut queries = Vec::new();
    for _ in 0..count {
        // Each query takes at least its 4-byte length: the count cannot outrun the data.
        queries.push(f.string()?);
    }
    f.0.is_empty().then_some((name, queries))
}

struct Request {
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u32,
}

fn transmission<S: Read + Write>(
    conn: &mut Conn<S>,
    session: Session,
    limits: &ServerLimits,
) -> Result<()> {
    let export = &*session.export;
    let size = export.size();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut head = [0u8; 28];
        if !conn.read_first(&mut head, "reading a request")? {
            return Ok(());
        }
        let magic = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
        if magic != REQUEST_MAGIC {
            return Err(protocol(format!("request magic {magic:#010x}")));
        }
        let req = Request {
            flags: u16::from_be_bytes(head[4..6].try_into().expect("2 bytes")),
            kind: u16::from_be_bytes(head[6..8].try_into().expect("2 bytes")),
            cookie: u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
            offset: u64::from_be_bytes(head[16..24].try_into().expect("8 bytes")),
            len: u32::from_be_bytes(head[24..28].try_into().expect("4 bytes")),
        };
        if req.kind == CMD_WRITE {
            // The payload follows whatever the answer: read it off first, or the stream falls out of step.
            if req.len > limits.request_len {
                return Err(protocol(format!("NBD_CMD_WRITE of {} bytes", req.len)));
            }
            buf.resize(req.len as usize, 0);
            conn.read_exact(&mut buf, "reading a write's payload")?;
        }
        if req.kind == CMD_DISC {
            // Requests are served in order: every earlier write has completed.
            return Ok(());
        }
        match execute(export, &session, size, limits, &req, &mut buf) {
            Ok(Reply::Done) => reply_done(conn, &session, req.cookie)?,
            Ok(Reply::Data) => reply_data(conn, &session, &req, &buf)?,
            Ok(Reply::Extents(extents)) => reply_extents(conn, req.cookie, &extents)?,
            Err(errno) => reply_error(conn, &session, req.cookie, errno)?,
        }
    }
}

enum Reply {
    Done,
    /// `buf` holds the data read.
    Data,
    Extents(Vec<(u32, u32)>),
}

fn execute(
    export: &dyn Export,
    session: &Session,
    size: u64,
    limits: &ServerLimits,
    req: &Request,
    buf: &mut Vec<u8>,
) -> std::result::Result<Reply, Errno> {
    let allowed = CMD_FLAG_FUA
        | match req.kind {
            CMD_WRITE_ZEROES => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
            CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
            _ => 0,
        };
    if req.flags & !allowed != 0 {
        return Err(Errno::Inval);
    }
    let fua = req.flags & CMD_FLAG_FUA != 0;
    if req.kind == CMD_FLUSH {
        // FLUSH carries no range (offset and length are zero by the spec; do not judge them).
        export.flush()?;
        return Ok(Reply::Done);
    }
    let writes = matches!(req.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if !matches!(req.kind, CMD_READ | CMD_BLOCK_STATUS) && !writes {
        return Err(Errno::Inval);
    }
    // The request bound is for data we hold: TRIM, WRITE_ZEROES and BLOCK_STATUS carry none (clients ask
    // block status of whole disks: nbdinfo --map sends up to 4 GiB - 1).
    let holds_data = matches!(req.kind, CMD_READ | CMD_WRITE);
    if req.len == 0 || (holds_data && req.len > limits.request_len) {
        return Err(Errno::Inval);
    }
    let end = req
        .offset
        .checked_add(u64::from(req.len))
        .ok_or(Errno::Inval)?;
    if writes && export.read_only() {
        return Err(Errno::Perm);
    }
    if end > size {
        // Data written past the end has no room (ENOSPC); a TRIM or READ there is a bad request.
        let stores = matches!(req.kind, CMD_WRITE | CMD_WRITE_ZEROES);
        return Err(if stores { Errno::NoSpc } else { Errno::Inval });
    }
    let result = match req.kind {
        CMD_READ => {
            buf.resize(req.len as usize, 0);
            export.read(req.offset, buf)?;
            Reply::Data
        }
        CMD_WRITE => {
            export.write(req.offset, buf, fua)?;
            Reply::Done
        }
        CMD_TRIM => {
            export.trim(req.offset, req.len)?;
            Reply::Done
        }
        CMD_WRITE_ZEROES => {
            if req.flags & CMD_FLAG_FAST_ZERO != 0 && !export.fast_zero() {
                return Err(Errno::NotSup);
            }
            export.write_zeroes(req.offset, req.len, req.flags & CMD_FLAG_NO_HOLE != 0)?;
            Reply::Done
        }
        _ => {
            if !session.structured || !session.base_allocation {
                return Err(Errno::Inval);
            }
            let mut extents = export.block_status(req.offset, req.len);
            clamp_extents(&mut extents, req.len);
            if extents.is_empty() {
                // Nothing known: "allocated data" is the answer that claims nothing.
                extents.push((req.len, 0));
            }
            if req.flags & CMD_FLAG_REQ_ONE != 0 {
                extents.truncate(1);
            }
            Reply::Extents(extents)
        }
    };
    if fua && writes {
        export.flush()?;
    }
    Ok(result)
}

/// Drops empty extents and cuts the list at `len` bytes: an export cannot make us claim past the request.
fn clamp_extents(extents: &mut Vec<(u32, u32)>, len: u32) {
    let mut left = len;
    extents.retain_mut(|(l, _)| {
        *l = (*l).min(left);
        left -= *l;
        *l > 0
    });
    for (_, flags) in extents.iter_mut() {
        *flags &= crate::STATE_HOLE | STATE_ZERO;
    }
}

fn structured_header(out: &mut Vec<u8>, flags: u16, kind: u16, cookie: u64, len: u32) {
    out.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

fn simple_header(out: &mut Vec<u8>, error: u32, cookie: u64) {
    out.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
}

fn reply_done<S: Read + Write>(conn: &mut Conn<S>, session: &Session, cookie: u64) -> Result<()> {
    if session.structured {
        structured_header(&mut conn.out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
    } else {
        simple_header(&mut conn.out, 0, cookie);
    }
    conn.send(&[])
}

fn reply_data<S: Read + Write>(
    conn: &mut Conn<S>,
    session: &Session,
    req: &Request,
    data: &[u8],
) -> Result<()> {
    if session.structured {
        // data.len() == req.len ≤ request_len: 8 more still fit a u32.
        let len = req
            .len
            .checked_add(8)
            .ok_or_else(|| protocol("read length"))?;
        structured_header(
            &mut conn.out,
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            req.cookie,
            len,
        );
        conn.out.extend_from_slice(&req.offset.to_be_bytes());
    } else {
        simple_header(&mut conn.out, 0, req.cookie);
    }
    conn.send(data)
}

fn reply_extents<S: Read + Write>(
    conn: &mut Conn<S>,
    cookie: u64,
    extents: &[(u32, u32)],
) -> Result<()> {
    // At most one extent per requested byte, and requests are ≤ 32 MiB... but an export could return many
    // one-byte extents: the length is computed checked.
    let len = extents
        .len()
        .checked_mul(8)
        .and_then(|n| n.checked_add(4))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| protocol("block status reply too long"))?;
    structured_header(
        &mut conn.out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        len,
    );
    conn.out
        .extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
    for (l, flags) in extents {
        conn.out.extend_from_slice(&l.to_be_bytes());
        conn.out.extend_from_slice(&flags.to_be_bytes());
    }
    conn.send(&[])
}

fn reply_error<S: Read + Write>(
    conn: &mut Conn<S>,
    session: &Session,
    cookie: u64,
    errno: Errno,
) -> Result<()> {
    if session.structured {
        // An ERROR chunk: the error, then an empty message.
        structured_header(&mut conn.out, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6);
        conn.out.extend_from_slice(&(errno as u32).to_be_bytes());
        conn.out.extend_from_slice(&0u16.to_be_bytes());
    } else {
        simple_header(&mut conn.out, errno as u32, cookie);
    }
    conn.send(&[])
}
