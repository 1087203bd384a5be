//! A two-instruction XDP program (`return XDP_PASS`) attached to the veth
//! ends that receive frames lb sends with XDP_TX.
//!
//! The kernel's veth queues XDP_TX frames for its peer but only kicks the
//! peer's NAPI when the peer has an XDP program of its own; with GRO alone
//! the frames wait until some other packet happens to flush them (seen
//! here: SYNs delivered a second late, in bursts). A NIC has no such
//! quirk, so the harness gives the peer a program that changes nothing.
//! Loaded with raw bpf(2) calls so the harness needs no eBPF toolchain.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_PASS: u8 = 2;

/// `r0 = XDP_PASS; exit`
const PROGRAM: [u8; 16] = [
    0xb7, 0x00, 0x00, 0x00, XDP_PASS, 0x00, 0x00, 0x00, // mov64 r0, imm
    0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
];

fn put_u32(attr: &mut [u8], off: usize, v: u32) {
    attr[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8], off: usize, v: u64) {
    attr[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-filled union bpf_attr of the size passed;
    // the pointers inside it outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: bpf(2) returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches `return XDP_PASS` to `ifname` in `ns` (driver mode on veth)
/// through a BPF link; the program stays attached while the returned fd
/// is open.
pub fn attach(ns: &Netns, ifname: &str) -> Result<OwnedFd> {
    let ifname_c = CString::new(ifname)?;
    ns.enter(move || -> Result<OwnedFd> {
        let license = c"GPL";
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_XDP);
        put_u32(&mut attr, 4, (PROGRAM.len() / 8) as u32);
        put_u64(&mut attr, 8, PROGRAM.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        attr[48..56].copy_from_slice(b"xdp_pass");
        put_u32(&mut attr, 68, BPF_XDP);
        let prog = bpf(BPF_PROG_LOAD, &mut attr).context("loading the XDP_PASS program")?;

        // SAFETY: a valid NUL-terminated interface name.
        let ifindex = unsafe { libc::if_nametoindex(ifname_c.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname_c:?}");
        }
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, std::os::fd::AsRawFd::as_raw_fd(&prog) as u32);
        put_u32(&mut attr, 4, ifindex);
        put_u32(&mut attr, 8, BPF_XDP);
        bpf(BPF_LINK_CREATE, &mut attr).context("attaching the XDP_PASS program")
    })?
    .with_context(|| format!("XDP_PASS on {}:{ifname}", ns.name()))
}
