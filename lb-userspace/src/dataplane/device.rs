//! What kind of network device an interface is, for choosing the XDP mode
//! `xdp_mode = "auto"` attaches in.
//!
//! Native XDP on a veth behaves unlike on a NIC in three ways a user
//! trying lb in namespaces or containers meets at once (measured here,
//! kernel 6.18): a veth sender leaves TCP/UDP checksums partial (offloaded),
//! which XDP cannot see, so a frame it rewrites and sends with
//! XDP_TX/XDP_REDIRECT arrives with a checksum the receiver rejects; an
//! XDP_TX frame reaches the peer only when the peer runs an XDP program;
//! an XDP_REDIRECT frame is accepted only when the peer runs NAPI (GRO on,
//! or an XDP program). In generic (skb) mode the program sees the same
//! bytes, but the frame stays an skb: its partial checksum keeps its
//! metadata (and is completed, or trusted, downstream as for any forwarded
//! skb), and TX/REDIRECT go through the device's ordinary transmit path.
//! NAT and DR through default veths then work with nothing tuned (tests
//! `e2e_veth`). So on a veth `auto` means generic.
//!
//! The driver is asked with the ethtool ioctl (`ETHTOOL_GDRVINFO`) in the
//! agent's own network namespace: unlike /sys/class/net, it needs no sysfs
//! mounted for the right namespace.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// linux/sockios.h
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// linux/ethtool.h
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}
const _: () = assert!(std::mem::size_of::<DrvInfo>() == 196);

/// The driver of interface `name` ("veth", "bcmgenet", "virtio_net"...), or
/// `None` when the device does not exist or does not answer ethtool.
pub fn driver(name: &str) -> Option<String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain data, all-zero is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO writes into `info`, which
    // outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return None;
    }
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Drivers on which `auto` attaches in generic mode (see the module doc).
pub fn prefers_generic(driver: &str) -> bool {
    driver == "veth"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_veth_prefers_generic() {
        assert!(prefers_generic("veth"));
        assert!(!prefers_generic("virtio_net"));
        assert!(!prefers_generic("bcmgenet"));
    }

    #[test]
    fn unknown_devices_have_no_driver() {
        assert_eq!(driver("no-such-dev0"), None);
        assert_eq!(driver(""), None);
        assert_eq!(driver("a-name-longer-than-ifnamsiz"), None);
    }
}
