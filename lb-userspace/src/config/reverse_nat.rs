//! The reverse-NAT ownership rule, in one place: `lb check` (config
//! validation, with file positions) and the programmer's plan (which
//! refuses a config that slipped past it) both ask it.
//!
//! A NAT real server's replies are recognised by their source (address,
//! port, protocol) alone, so each such endpoint may belong to one NAT
//! service only: a real server appears once among all NAT services (its
//! own included), and a sorry server may be one of its own service's real
//! servers but no other service's real or sorry server.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use super::Protocol;

/// How an endpoint is used by the service that claims it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    RealServer,
    SorryServer,
}

/// The owners of the endpoints claimed so far; `O` names a service
/// (an index in the config, a service key).
#[derive(Debug)]
pub struct ReverseNatOwners<O> {
    owners: HashMap<(IpAddr, u16, Protocol), O>,
}

impl<O> Default for ReverseNatOwners<O> {
    fn default() -> Self {
        Self {
            owners: HashMap::new(),
        }
    }
}

impl<O: Copy + PartialEq> ReverseNatOwners<O> {
    /// NAT service `who` claims the replies of `addr`; the service that
    /// owns them already when the rule forbids the claim.
    pub fn claim(
        &mut self,
        addr: SocketAddr,
        protocol: Protocol,
        who: O,
        claim: Claim,
    ) -> Result<(), O> {
        let key = (addr.ip(), addr.port(), protocol);
        match (self.owners.get(&key), claim) {
            (None, _) => {
                self.owners.insert(key, who);
                Ok(())
            }
            (Some(&first), Claim::SorryServer) if first == who => Ok(()),
            (Some(&first), _) => Err(first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_endpoint_belongs_to_one_nat_service() {
        let mut owners = ReverseNatOwners::default();
        let real = addr("10.0.0.1:80");
        assert_eq!(
            owners.claim(real, Protocol::Tcp, 0, Claim::RealServer),
            Ok(())
        );
        // Another service, or the same real server twice in one service.
        assert_eq!(
            owners.claim(real, Protocol::Tcp, 1, Claim::RealServer),
            Err(0)
        );
        assert_eq!(
            owners.claim(real, Protocol::Tcp, 0, Claim::RealServer),
            Err(0)
        );
        // The sorry server may be one of its own service's real servers...
        assert_eq!(
            owners.claim(real, Protocol::Tcp, 0, Claim::SorryServer),
            Ok(())
        );
        // ...not another's.
        assert_eq!(
            owners.claim(real, Protocol::Tcp, 1, Claim::SorryServer),
            Err(0)
        );
        // Another protocol or port is another endpoint.
        assert_eq!(
            owners.claim(real, Protocol::Udp, 1, Claim::RealServer),
            Ok(())
        );
        let other_port = addr("10.0.0.1:81");
        assert_eq!(
            owners.claim(other_port, Protocol::Tcp, 1, Claim::SorryServer),
            Ok(())
        );
    }
}
