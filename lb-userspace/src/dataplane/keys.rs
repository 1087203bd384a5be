//! Conversions from config values to the byte layout of the map keys
//! (addresses as network-order words, ports in network order).

use std::net::{IpAddr, SocketAddr};

use lb_common::{EndpointKey, FAMILY_IPV4, PROTO_TCP, PROTO_UDP};

use crate::config::Protocol;

pub use lb_common::{addr_words, family};

/// Inverse of [`addr_words`].
pub fn words_addr(words: [u32; 4], family: u8) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::from(words[0].to_ne_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    }
}

pub fn proto(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
    }
}

/// The map key of a service or real server (`EndpointKey::new`).
pub fn endpoint_key(addr: SocketAddr, protocol: Protocol) -> EndpointKey {
    EndpointKey::new(addr, proto(protocol))
}

#[cfg(test)]
mod tests {
    use lb_common::FAMILY_IPV6;

    use super::*;

    #[test]
    fn ipv4_words_hold_the_packet_bytes_in_word_zero() {
        let words = addr_words("192.168.253.120".parse().unwrap());
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[..4], &[192, 168, 253, 120]);
        assert!(bytes[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn ipv6_words_hold_the_packet_bytes_in_order() {
        let addr: IpAddr = "2001:db8::1:2".parse().unwrap();
        let words = addr_words(addr);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let IpAddr::V6(v6) = addr else { unreachable!() };
        assert_eq!(bytes, v6.octets());
        assert_eq!(words_addr(words, FAMILY_IPV6), addr);
    }

    #[test]
    fn endpoint_key_port_is_network_order() {
        let key = endpoint_key("10.0.0.1:80".parse().unwrap(), Protocol::Udp);
        assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
        assert_eq!(key.proto, PROTO_UDP);
        assert_eq!(key.family, FAMILY_IPV4);
        assert_eq!(
            words_addr(key.addr, key.family),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
