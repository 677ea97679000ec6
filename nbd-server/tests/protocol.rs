//! `serve` driven over a socket pair by a hand-written client: the handshake, hostile input, both reply styles.

mod common;
use common::*;
use sdar_nbd::ServerLimits;
use std::io::{Read, Write};

const SIZE: usize = 4 * GRANULE;

fn disk() -> Vec<u8> {
    // Granule 2 stays zero: a hole for block status.
    let mut d = pattern(SIZE, 7);
    d[2 * GRANULE..3 * GRANULE].fill(0);
    d
}

fn closed(c: &mut std::os::unix::net::UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn go_info_list_and_named_exports() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    greet(&mut c, 3);
    send_opt(&mut c, 3, &[]);
    let mut names = Vec::new();
    loop {
        let (opt, kind, data) = opt_reply(&mut c);
        assert_eq!(opt, 3);
        if kind == 1 {
            break;
        }
        assert_eq!(kind, 2);
        names.push(String::from_utf8(data[4..4 + u32_at(&data, 0) as usize].to_vec()).unwrap());
    }
    assert_eq!(names, ["", "disk"]);
    // INFO on an unknown export: NBD_REP_ERR_UNKNOWN, and the session goes on.
    send_opt(&mut c, 6, &go_data("nope", &[]));
    assert_eq!(opt_reply(&mut c).1, (1 << 31) + 6);
    // INFO then GO answer the same.
    let mut answers = Vec::new();
    for opt in [6u32, 7] {
        send_opt(&mut c, opt, &go_data("disk", &[3]));
        let mut replies = Vec::new();
        loop {
            let (o, kind, data) = opt_reply(&mut c);
            assert_eq!(o, opt);
            if kind == 1 {
                break;
            }
            replies.push((kind, data));
        }
        answers.push(replies);
    }
    assert_eq!(answers[0], answers[1]);
    let export = answers[0].iter().find(|(_, d)| u16_at(d, 0) == 0).unwrap();
    assert_eq!(u64_at(&export.1, 2), SIZE as u64);
    let flags = u16_at(&export.1, 10);
    assert_eq!(flags & 1, 1, "HAS_FLAGS");
    assert_eq!(flags & (1 << 3), 1 << 3, "SEND_FUA");
    let bs = answers[0].iter().find(|(_, d)| u16_at(d, 0) == 3).unwrap();
    assert_eq!(
        (u32_at(&bs.1, 2), u32_at(&bs.1, 6), u32_at(&bs.1, 10)),
        (1, 65536, 32 << 20)
    );
    // Transmission works after GO (simple replies: none negotiated).
    request(&mut c, 0, 0, 9, 100, 10, &[]);
    assert_eq!(simple(&mut c), (0, 9));
    assert_eq!(read_n(&mut c, 10), disk()[100..110]);
    request(&mut c, 0, 2, 10, 0, 0, &[]);
    assert!(closed(&mut c));
    h.join().unwrap().unwrap();
}

#[test]
fn export_name_option_and_no_zeroes() {
    for (client_flags, tail) in [(3u32, 0usize), (1, 124)] {
        let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
        greet(&mut c, client_flags);
        send_opt(&mut c, 1, b"disk");
        let r = read_n(&mut c, 10 + tail);
        assert_eq!(u64_at(&r, 0), SIZE as u64);
        request(&mut c, 0, 0, 1, 0, 4, &[]);
        assert_eq!(simple(&mut c), (0, 1));
        assert_eq!(read_n(&mut c, 4), disk()[..4]);
        drop(c);
        h.join().unwrap().unwrap();
    }
    // An unknown name: the connection closes (EXPORT_NAME has no error reply).
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    greet(&mut c, 3);
    send_opt(&mut c, 1, b"nope");
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());
}

#[test]
fn unknown_options_are_unsupported_and_skipped() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    greet(&mut c, 3);
    for opt in [4u32, 5, 11, 99, 0xffff_ffff] {
        send_opt(&mut c, opt, &[0xaa; 300]);
        let (o, kind, _) = opt_reply(&mut c);
        assert_eq!((o, kind), (opt, (1 << 31) + 1));
    }
    // Malformed known options: ERR_INVALID, and on.
    send_opt(&mut c, 8, b"x");
    assert_eq!(opt_reply(&mut c).1, (1 << 31) + 3);
    send_opt(&mut c, 7, &[0, 0, 0, 9, 1]);
    assert_eq!(opt_reply(&mut c).1, (1 << 31) + 3);
    // SET_META_CONTEXT before structured replies: invalid.
    send_opt(&mut c, 10, &meta_data("", &["base:allocation"]));
    assert_eq!(opt_reply(&mut c).1, (1 << 31) + 3);
    // ABORT is acknowledged and ends the session well.
    send_opt(&mut c, 2, &[]);
    assert_eq!(opt_reply(&mut c).1, 1);
    assert!(closed(&mut c));
    h.join().unwrap().unwrap();
}

#[test]
fn bad_magic_and_bad_client_flags_disconnect() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    greet(&mut c, 3);
    c.write_all(b"IHAVEOPX\0\0\0\x07\0\0\0\0").unwrap();
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());

    for flags in [0u32, 1 << 7] {
        let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
        greet(&mut c, flags);
        assert!(closed(&mut c));
        assert!(h.join().unwrap().is_err());
    }

    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    go(&mut c, "", false, false);
    let mut garbage = vec![0u8; 28];
    garbage[0] = 0x42;
    c.write_all(&garbage).unwrap();
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());
}

#[test]
fn oversized_options_are_skipped_then_refused() {
    let limits = ServerLimits::default();
    let (mut c, h) = start(exports(MemExport::new(disk())), limits.clone());
    greet(&mut c, 3);
    // Over option_len but within option_skip: ERR_TOO_BIG, data skipped, session goes on.
    send_opt(&mut c, 7, &vec![0u8; limits.option_len as usize + 1]);
    assert_eq!(opt_reply(&mut c).1, (1 << 31) + 9);
    send_opt(&mut c, 8, &[]);
    assert_eq!(opt_reply(&mut c).1, 1);
    // A header claiming 4 GiB - 1: disconnect, nothing allocated or read.
    c.write_all(b"IHAVEOPT\0\0\0\x07\xff\xff\xff\xff").unwrap();
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());
}

#[test]
fn request_bounds_and_flags() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    go(&mut c, "", false, false);
    // READ of 4 GiB - 1: EINVAL without allocating.
    request(&mut c, 0, 0, 1, 0, u32::MAX, &[]);
    assert_eq!(simple(&mut c), (22, 1));
    // offset + length wrapping past 2^64.
    request(&mut c, 0, 0, 2, u64::MAX - 3, 8, &[]);
    assert_eq!(simple(&mut c), (22, 2));
    // Past the end: reads EINVAL, writes ENOSPC, trims EINVAL.
    request(&mut c, 0, 0, 3, SIZE as u64 - 4, 8, &[]);
    assert_eq!(simple(&mut c), (22, 3));
    request(&mut c, 0, 1, 4, SIZE as u64 - 4, 8, &[1; 8]);
    assert_eq!(simple(&mut c), (28, 4));
    request(&mut c, 0, 4, 5, SIZE as u64 - 4, 8, &[]);
    assert_eq!(simple(&mut c), (22, 5));
    // Unadvertised flags (DF, a reserved bit) and NO_HOLE on a READ: EINVAL; FUA on a READ is fine.
    for (cookie, flags) in [(6u64, 1u16 << 2), (7, 1 << 9), (8, 1 << 1)] {
        request(&mut c, flags, 0, cookie, 0, 8, &[]);
        assert_eq!(simple(&mut c), (22, cookie));
    }
    request(&mut c, 1, 0, 9, 0, 8, &[]);
    assert_eq!(simple(&mut c), (0, 9));
    read_n(&mut c, 8);
    // An unknown command and BLOCK_STATUS without structured replies: EINVAL.
    request(&mut c, 0, 5, 10, 0, 8, &[]);
    assert_eq!(simple(&mut c), (22, 10));
    request(&mut c, 0, 7, 11, 0, 8, &[]);
    assert_eq!(simple(&mut c), (22, 11));
    // FAST_ZERO where zeroing is not fast: ENOTSUP; plain WRITE_ZEROES works.
    request(&mut c, 1 << 4, 6, 12, 0, 8, &[]);
    assert_eq!(simple(&mut c), (95, 12));
    request(&mut c, 1 << 1 | 1, 6, 13, 0, 8, &[]);
    assert_eq!(simple(&mut c), (0, 13));
    request(&mut c, 0, 0, 14, 0, 8, &[]);
    assert_eq!(simple(&mut c), (0, 14));
    assert_eq!(read_n(&mut c, 8), [0; 8]);
    // A WRITE longer than the bound: disconnect rather than allocate.
    request(&mut c, 0, 1, 15, 0, (32 << 20) + 1, &[]);
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());
}

#[test]
fn rejected_write_drains_its_payload() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    go(&mut c, "", false, false);
    // The payload looks like a READ request: if it were not drained, the server would answer it.
    let mut fake = Vec::new();
    fake.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    fake.extend_from_slice(&[0, 0, 0, 0]);
    fake.extend_from_slice(&77u64.to_be_bytes());
    fake.extend_from_slice(&[0; 8]);
    fake.extend_from_slice(&4u32.to_be_bytes());
    for (cookie, flags, offset) in [
        (1u64, 1u16 << 9, 0u64),
        (2, 0, SIZE as u64 - 8),
        (3, 0, u64::MAX - 3),
    ] {
        request(&mut c, flags, 1, cookie, offset, fake.len() as u32, &fake);
        let (err, got) = simple(&mut c);
        assert_eq!(got, cookie);
        assert_ne!(err, 0);
    }
    request(&mut c, 0, 1, 4, 10, 5, b"hello");
    assert_eq!(simple(&mut c), (0, 4));
    request(&mut c, 0, 0, 5, 10, 5, &[]);
    assert_eq!(simple(&mut c), (0, 5));
    assert_eq!(read_n(&mut c, 5), b"hello");
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let export = std::sync::Arc::new(MemExport {
        data: std::sync::RwLock::new(disk()),
        read_only: true,
    });
    let (mut c, h) = start(exports(export), ServerLimits::default());
    let (_, flags) = go(&mut c, "", false, false);
    assert_eq!(flags & 2, 2, "READ_ONLY");
    request(&mut c, 0, 1, 1, 0, 4, &[9; 4]);
    assert_eq!(simple(&mut c), (1, 1));
    request(&mut c, 0, 0, 2, 0, 4, &[]);
    assert_eq!(simple(&mut c), (0, 2));
    assert_eq!(read_n(&mut c, 4), disk()[..4]);
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn structured_replies_for_everything_and_block_status() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    go(&mut c, "disk", true, true);
    request(&mut c, 0, 0, 1, 5, 100, &[]);
    let (flags, kind, cookie, data) = chunk(&mut c);
    assert_eq!((flags, kind, cookie), (1, 1, 1));
    assert_eq!(u64_at(&data, 0), 5);
    assert_eq!(&data[8..], &disk()[5..105]);
    // An early error on a READ is structured too.
    request(&mut c, 1 << 2, 0, 2, 0, 8, &[]);
    assert_eq!(chunk_error(&mut c), 22);
    request(&mut c, 0, 0, 3, u64::MAX, 8, &[]);
    assert_eq!(chunk_error(&mut c), 22);
    // Writes, flushes: a NONE chunk with DONE.
    request(&mut c, 1, 1, 4, 0, 3, b"abc");
    assert_eq!(chunk(&mut c), (1, 0, 4, vec![]));
    request(&mut c, 0, 3, 5, 0, 0, &[]);
    assert_eq!(chunk(&mut c), (1, 0, 5, vec![]));
    // Block status: granule 2 is a hole reading zeros, the rest data.
    request(&mut c, 0, 7, 6, 0, SIZE as u32, &[]);
    let (flags, kind, cookie, data) = chunk(&mut c);
    assert_eq!((flags, kind, cookie), (1, 5, 6));
    assert_eq!(u32_at(&data, 0), 1, "context id of base:allocation");
    let extents: Vec<(u32, u32)> = data[4..]
        .chunks(8)
        .map(|e| (u32_at(e, 0), u32_at(e, 4)))
        .collect();
    let g = GRANULE as u32;
    assert_eq!(extents, [(2 * g, 0), (g, 3), (g, 0)]);
    // REQ_ONE: one extent, within the request.
    request(&mut c, 1 << 3, 7, 7, g as u64 * 2 + 10, 100, &[]);
    let (_, kind, _, data) = chunk(&mut c);
    assert_eq!(kind, 5);
    assert_eq!(data.len(), 12);
    assert_eq!((u32_at(&data, 4), u32_at(&data, 8)), (100, 3));
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn block_status_needs_the_context_selected() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    greet(&mut c, 3);
    send_opt(&mut c, 8, &[]);
    assert_eq!(opt_reply(&mut c).1, 1);
    // LIST with no query lists base:allocation; SET with an unknown namespace selects nothing.
    send_opt(&mut c, 9, &meta_data("", &[]));
    let (_, kind, data) = opt_reply(&mut c);
    assert_eq!((kind, &data[4..]), (4, &b"base:allocation"[..]));
    assert_eq!(opt_reply(&mut c).1, 1);
    send_opt(
        &mut c,
        10,
        &meta_data("", &["qemu:dirty-bitmap:x", "base:"]),
    );
    assert_eq!(opt_reply(&mut c).1, 1);
    send_opt(&mut c, 7, &go_data("", &[]));
    while opt_reply(&mut c).1 != 1 {}
    request(&mut c, 0, 7, 1, 0, 8, &[]);
    assert_eq!(chunk_error(&mut c), 22);
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn a_client_sending_one_byte_at_a_time() {
    let (mut c, h) = start(exports(MemExport::new(disk())), ServerLimits::default());
    let g = read_n(&mut c, 18);
    assert_eq!(&g[..8], b"NBDMAGIC");
    let mut msg = 3u32.to_be_bytes().to_vec();
    for (opt, data) in [(8u32, vec![]), (7, go_data("", &[]))] {
        msg.extend_from_slice(b"IHAVEOPT");
        msg.extend_from_slice(&opt.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(&data);
    }
    msg.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 1]);
    msg.extend_from_slice(&5u64.to_be_bytes());
    msg.extend_from_slice(&20u64.to_be_bytes());
    msg.extend_from_slice(&3u32.to_be_bytes());
    msg.extend_from_slice(b"xyz");
    for b in &msg {
        c.write_all(&[*b]).unwrap();
        c.flush().unwrap();
    }
    assert_eq!(opt_reply(&mut c).1, 1);
    while opt_reply(&mut c).1 != 1 {}
    assert_eq!(chunk(&mut c), (1, 0, 5, vec![]));
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn too_many_options_disconnect() {
    let limits = ServerLimits {
        options: 4,
        ..ServerLimits::default()
    };
    let (mut c, h) = start(exports(MemExport::new(disk())), limits);
    greet(&mut c, 3);
    for _ in 0..4 {
        send_opt(&mut c, 99, &[]);
        opt_reply(&mut c);
    }
    // The server may close before reading this one: the write may fail.
    let _ = c.write_all(b"IHAVEOPT\0\0\0\x63\0\0\0\0");
    assert!(closed(&mut c));
    assert!(h.join().unwrap().is_err());
}
