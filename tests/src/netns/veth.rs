//! veth pairs between two namespaces, made directly inside them (nothing
//! appears in the root namespace), and the MAC address text both ends of
//! the kit read and write.
//!
//! Two kinds of end, because tests and benchmarks want different things:
//! the tests tune both ends so XDP on veths behaves as it does on a NIC
//! ([`VethEnd::TUNED`]); the benchmarks measure with ends as `ip` makes
//! them ([`VethEnd::PLAIN`]), tuning only the ends that need it, sometimes
//! with fixed MACs.

use anyhow::{anyhow, Context, Result};

use super::{run, Netns};

/// How one end of a veth pair is set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VethEnd {
    /// A fixed MAC address; `None`: the kernel picks a random one.
    pub mac: Option<[u8; 6]>,
    /// GRO on: the kernel's veth only accepts a frame that an XDP program
    /// sends it with XDP_TX/XDP_REDIRECT when the receiving end runs NAPI,
    /// which GRO switches on.
    pub gro: bool,
    /// Transmit checksum offload off: frames leave with complete checksums,
    /// as on a wire between real hosts (a partial checksum cannot survive
    /// XDP_TX/REDIRECT).
    pub tx_checksum_off: bool,
}

impl VethEnd {
    /// As `ip link add ... type veth` makes it.
    pub const PLAIN: VethEnd = VethEnd {
        mac: None,
        gro: false,
        tx_checksum_off: false,
    };

    /// GRO on and transmit checksum offload off (see the fields).
    pub const TUNED: VethEnd = VethEnd {
        mac: None,
        gro: true,
        tx_checksum_off: true,
    };

    /// This end with a fixed MAC address.
    pub const fn with_mac(self, mac: [u8; 6]) -> VethEnd {
        VethEnd {
            mac: Some(mac),
            ..self
        }
    }

    /// `ethtool -K` arguments for this end, if it needs any.
    fn ethtool_features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.gro {
            f.extend(["gro", "on"]);
        }
        if self.tx_checksum_off {
            f.extend(["tx", "off"]);
        }
        f
    }
}

/// Both ends of a pair: `a` is the end in the first namespace given to
/// [`veth_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VethOptions {
    pub a: VethEnd,
    pub b: VethEnd,
}

impl VethOptions {
    pub const PLAIN: VethOptions = VethOptions {
        a: VethEnd::PLAIN,
        b: VethEnd::PLAIN,
    };
    pub const TUNED: VethOptions = VethOptions {
        a: VethEnd::TUNED,
        b: VethEnd::TUNED,
    };
}

/// Connects `a`'s interface `a_if` to `b`'s `b_if` with a veth pair, both
/// ends tuned ([`VethEnd::TUNED`]), and brings both ends up: what the
/// end-to-end tests' hosts are wired with.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    veth_with(a, a_if, b, b_if, VethOptions::TUNED)
}

/// [`veth`] with each end set up as `opts` says.
pub fn veth_with(a: &Netns, a_if: &str, b: &Netns, b_if: &str, opts: VethOptions) -> Result<()> {
    let mut args = vec!["link".to_string(), "add".into(), a_if.into()];
    if let Some(mac) = opts.a.mac {
        args.extend(["address".into(), mac_str(&mac)]);
    }
    args.extend(
        ["type", "veth", "peer", "name", b_if, "netns", b.name()]
            .into_iter()
            .map(String::from),
    );
    if let Some(mac) = opts.b.mac {
        args.extend(["address".into(), mac_str(&mac)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    a.ip(&args)
        .with_context(|| format!("veth {}:{a_if} <-> {}:{b_if}", a.name(), b.name()))?;
    for (ns, ifname, end) in [(a, a_if, opts.a), (b, b_if, opts.b)] {
        let features = end.ethtool_features();
        if !features.is_empty() {
            let mut cmd = ns.command("ethtool");
            cmd.args(["-K", ifname]).args(&features);
            run(&mut cmd).with_context(|| {
                format!(
                    "ethtool on {}:{ifname} (apt-get install ethtool)",
                    ns.name()
                )
            })?;
        }
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// `02:00:00:00:01:fe`, as `ip` takes it.
pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The inverse of [`mac_str`] (as /sys/class/net/DEV/address shows it).
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow!("bad MAC {s:?}: not 6 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = [0x02, 0, 0, 0, 0x01, 0xfe];
        assert_eq!(mac_str(&m), "02:00:00:00:01:fe");
        assert_eq!(parse_mac("02:00:00:00:01:fe").unwrap(), m);
        assert!(parse_mac("02:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }

    #[test]
    fn only_tuned_ends_run_ethtool() {
        assert!(VethEnd::PLAIN.ethtool_features().is_empty());
        assert!(VethEnd::PLAIN
            .with_mac([2, 0, 0, 0, 0, 1])
            .ethtool_features()
            .is_empty());
        assert_eq!(
            VethEnd::TUNED.ethtool_features(),
            ["gro", "on", "tx", "off"]
        );
    }
}
