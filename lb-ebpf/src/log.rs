//! Rare data-plane events reported through aya-log, behind the agent's
//! switch (`[agent] ebpf_log`, `lb_common::ebpf_log`): at `info` a packet
//! dropped because its service has no real server and no sorry server, and
//! an established flow chosen again because its real server is down or
//! was removed; at `debug` also new flows sent to a sorry server and flows
//! whose address:port now belongs to another service than the one they
//! were scheduled in.
//!
//! Cost. The functions called from `schedule` are reached only where such
//! an event is counted, which no ordinary packet reaches; the switch is
//! read there and nowhere else, so with the switch off the forwarding
//! paths run the same instructions as without logging. With it on, each
//! event writes one record (about 300 bytes) into aya-log's ring buffer
//! (128 KiB), without waking the agent, which empties it four times a
//! second; a record that does not fit (a flood of events outruns any
//! reader) is dropped by the kernel and the packet goes on as with the
//! switch off: logging never changes a verdict and never waits.
//!
//! Each function starts with `cold_path`: the blocks that call it are laid
//! out of line, away from the forwarding paths (the established path
//! measured 5.9x the baseline without it, 5.3x with it, main's object 5.2x).
//!
//! Records are written here, in aya-log's own format (`aya_log_common`,
//! the version aya-log-ebpf pins) and into its ring buffer, rather than by
//! the `aya_log_ebpf::info!` macro, which the program could not afford
//! (measured on kernel 6.18): each macro call keeps its header and every
//! argument on the stack, and the program's main frame (448 bytes, every
//! parser and rewrite inlined into it) leaves too little of the kernel's
//! 512; three macro calls inlined did not fit, and one called function
//! holding them was verified again for every path reaching it (over the
//! verifier's limit of 1,000,000 instructions). [`emit`] writes each field
//! straight into the reserved record, at offsets the compiler folds into
//! constants, so it needs next to no stack; inlined where it is called, it
//! took the instructions the verifier walks from 79,910 to 142,315 and the
//! program from 5,314 to 8,050 instructions (kernel 6.18).

use aya_ebpf::macros::map;
use aya_ebpf::maps::Array;
use aya_log_common::{ArgumentKind, Level, RecordFieldKind};
/// `bpf_ringbuf_submit` flag: wake no reader. A wakeup took an event from
/// 0.3 to 7.4 us (BENCHMARKS.md "eBPF log switch (issue 8)"); the agent
/// reads the buffer on a timer instead (`dataplane::ebpf_log::READ_PERIOD`).
const BPF_RB_NO_WAKEUP: u64 = 1;
use aya_log_ebpf::macro_support::AYA_LOGS;
use lb_common::{ebpf_log, Flow, Service, FAMILY_IPV4, PROTO_TCP};

use crate::{maps::BACKENDS, parse::Packet};

/// The switch, one `lb_common::ebpf_log` level. Written by the agent at
/// start and on every reload; read by XDP only in the functions below.
/// Never pinned: it belongs to this program (`lb_common::layout`).
#[map]
pub static LOG_LEVEL: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
fn enabled(level: u32) -> bool {
    LOG_LEVEL.get(0).is_some_and(|l| *l >= level)
}

/// What happened, as the record says it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Event {
    NoBackend,
    Rescheduled,
    OtherService,
    Sorry,
}

/// `FLOW_RESCHEDULED`: `p`'s flow-table entry (a copy, `flow`) cannot be used for
/// service `svc`. Info when its real server is down or was removed (the
/// program cannot tell the two apart: a removed real server's slot stays
/// inactive until it is reused), debug when the flow's address:port is
/// another service's now.
#[inline(always)]
pub fn rescheduled(p: &Packet, flow: Flow, svc: &Service) {
    core::hint::cold_path();
    if !enabled(ebpf_log::INFO) {
        return;
    }
    if flow.service_id == svc.id {
        emit(p, Event::Rescheduled, ids(flow.service_id, flow.backend_id));
    } else if enabled(ebpf_log::DEBUG) {
        emit(
            p,
            Event::OtherService,
            ids(flow.service_id, flow.backend_id),
        );
    }
}

/// `NO_BACKEND`: `p` is dropped because service `svc` has no real server
/// in its Maglev table and no sorry server.
#[inline(always)]
pub fn no_backend(p: &Packet, svc: &Service) {
    core::hint::cold_path();
    if enabled(ebpf_log::INFO) {
        emit(p, Event::NoBackend, ids(svc.id, lb_common::NO_BACKEND));
    }
}

/// A new flow of `p` goes to service `svc`'s sorry server (backend id
/// `id`): no real server is up.
#[inline(always)]
pub fn sorry(p: &Packet, svc: &Service, id: u32) {
    core::hint::cold_path();
    if enabled(ebpf_log::DEBUG) {
        emit(p, Event::Sorry, ids(svc.id, id));
    }
}

#[inline(always)]
fn ids(service_id: u32, backend_id: u32) -> u64 {
    (u64::from(service_id) << 32) | u64::from(backend_id)
}

/// Room reserved per record: more than the longest (295 bytes, a flow
/// rescheduled); a record that does not fit is discarded whole.
const RECORD: usize = 512;

/// Writes one aya-log record (inlined: a called function's frame would
/// come on top of the main one, see the module doc): a header (target, level, module, file, line,
/// number of arguments), then the arguments, each `[kind][u16 length]
/// [bytes]`, all behind a `u16` total size; the agent's aya-log reader
/// joins the arguments into the message.
///
/// `ids` is the service id (high half) and backend id (low half): one
/// register less to keep across the helper calls.
#[inline(always)]
fn emit(p: &Packet, event: Event, ids: u64) {
    let Some(mut buf) = AYA_LOGS.reserve_bytes(RECORD, 0) else {
        // Full: dropped (see the module doc).
        return;
    };
    let mut w = Writer {
        buf: &mut buf,
        pos: 2,
    };
    let written = w.record(p, event, (ids >> 32) as u32, ids as u32);
    match written {
        Some(size) => {
            let b = size.to_ne_bytes();
            buf[0] = b[0];
            buf[1] = b[1];
            buf.submit(BPF_RB_NO_WAKEUP);
        }
        None => buf.discard(0),
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    // Byte by byte through indices, not `copy_from_slice` from a
    // temporary: a temporary is stack, of which `emit` has almost none.
    #[inline(always)]
    fn byte(&mut self, b: u8) -> Option<()> {
        *self.buf.get_mut(self.pos)? = b;
        self.pos += 1;
        Some(())
    }

    #[inline(always)]
    fn u16_ne(&mut self, v: u16) -> Option<()> {
        let b = v.to_ne_bytes();
        self.byte(b[0])?;
        self.byte(b[1])
    }

    #[inline(always)]
    fn u32_ne(&mut self, v: u32) -> Option<()> {
        let b = v.to_ne_bytes();
        self.byte(b[0])?;
        self.byte(b[1])?;
        self.byte(b[2])?;
        self.byte(b[3])
    }

    /// A field's kind and length; its bytes follow.
    #[inline(always)]
    fn head(&mut self, kind: u8, len: u16) -> Option<()> {
        self.byte(kind)?;
        self.u16_ne(len)
    }

    /// A field whose bytes are in the program's read-only data.
    #[inline(always)]
    fn field(&mut self, kind: u8, value: &[u8]) -> Option<()> {
        self.head(kind, value.len() as u16)?;
        self.buf
            .get_mut(self.pos..)?
            .get_mut(..value.len())?
            .copy_from_slice(value);
        self.pos += value.len();
        Some(())
    }

    #[inline(always)]
    fn text(&mut self, s: &str) -> Option<()> {
        self.field(ArgumentKind::Str.into(), s.as_bytes())
    }

    #[inline(always)]
    fn u32(&mut self, v: u32) -> Option<()> {
        self.head(ArgumentKind::U32.into(), 4)?;
        self.u32_ne(v)
    }

    #[inline(always)]
    fn port(&mut self, port_be: u16) -> Option<()> {
        self.head(ArgumentKind::U16.into(), 2)?;
        self.u16_ne(u16::from_be(port_be))
    }

    /// An address as the program holds it (network byte order words, IPv4
    /// in word 0), always as an IPv6 address, IPv4 IPv4-mapped
    /// (`::ffff:a.b.c.d`, which the agent prints as `a.b.c.d`): every field
    /// of a record then has a fixed length, so every offset is a constant
    /// and writing a record needs no stack (see `record`).
    #[inline(always)]
    fn addr(&mut self, family: u8, words: &[u32; 4]) -> Option<()> {
        self.head(ArgumentKind::Ipv6Addr.into(), 16)?;
        if family == FAMILY_IPV4 {
            self.u32_ne(0)?;
            self.u32_ne(0)?;
            self.u32_ne(u32::from_ne_bytes([0, 0, 0xff, 0xff]))?;
            self.u32_ne(words[0])
        } else {
            self.u32_ne(words[0])?;
            self.u32_ne(words[1])?;
            self.u32_ne(words[2])?;
            self.u32_ne(words[3])
        }
    }

    /// The whole record; its size. What happened comes last, after the
    /// fields of fixed length: up to it, every offset is a constant the
    /// compiler folds, and the only variable is the record's pointer.
    #[inline(always)]
    fn record(
        &mut self,
        p: &Packet,
        event: Event,
        service_id: u32,
        backend_id: u32,
    ) -> Option<u16> {
        let real = event != Event::NoBackend;
        // The arguments below, counted.
        let args: u32 = if real { 12 + 6 } else { 12 };
        self.field(RecordFieldKind::Target.into(), b"lb::xdp")?;
        self.head(RecordFieldKind::Level.into(), 1)?;
        self.byte(Level::Info.into())?;
        self.field(RecordFieldKind::Module.into(), b"lb_xdp::log")?;
        self.field(RecordFieldKind::File.into(), b"lb-ebpf/src/log.rs")?;
        self.head(RecordFieldKind::Line.into(), 4)?;
        self.u32_ne(0)?;
        self.head(RecordFieldKind::NumArgs.into(), 4)?;
        self.u32_ne(args)?;

        self.text("flow ")?;
        self.addr(p.family, &p.src)?;
        self.text(":")?;
        self.port(p.sport_be)?;
        self.text(" -> ")?;
        self.addr(p.family, &p.dst)?;
        self.text(":")?;
        self.port(p.dport_be)?;
        self.text(if p.proto == PROTO_TCP { " tcp" } else { " udp" })?;
        self.text(" (service id ")?;
        self.u32(service_id)?;
        if real {
            // The slot as it is now: for a real server removed long ago
            // and its slot reused, another one's (the ids say so).
            // Read in place: a copy would take stack.
            self.text(", real server ")?;
            match BACKENDS.get(backend_id) {
                Some(b) => {
                    self.addr(b.family, &b.addr)?;
                    self.text(":")?;
                    self.port(b.port_be)?;
                }
                None => {
                    self.addr(FAMILY_IPV4, &[0; 4])?;
                    self.text(":")?;
                    self.port(0)?;
                }
            }
            self.text(", backend id ")?;
            self.u32(backend_id)?;
        }
        self.text(match event {
            Event::NoBackend => "): dropped, no real server is up and no sorry server",
            Event::Rescheduled => "): scheduled again, its real server is down or was removed",
            Event::OtherService => "): scheduled again, its address:port is another service's now",
            Event::Sorry => "): new, to the sorry server, no real server is up",
        })?;
        Some(self.pos as u16)
    }
}
