//! The I/O half of announcing: one kernel host route per announced VIP,
//! in `[announce] table` with `[announce] protocol`, on `[announce]
//! interface`, programmed through the agent's netlink module.

use std::{collections::HashSet, net::IpAddr};

use crate::{
    config::Announce,
    netlink::{Netlink, NetlinkError, RouteOwner},
};

/// The routes of one `[announce]` setting.
pub struct Routes {
    netlink: Netlink,
    owner: RouteOwner,
    interface: String,
    index: u32,
    /// What this agent believes is in the table.
    installed: HashSet<IpAddr>,
}

/// What one [`Routes::apply`] changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
    /// Failures, each already in words (the next update tries again).
    pub errors: Vec<NetlinkError>,
}

pub fn owner(config: &Announce) -> RouteOwner {
    RouteOwner {
        table: config.table,
        protocol: config.protocol,
    }
}

impl Routes {
    /// Find the interface and the routes a previous agent left (kept over
    /// a `kill -9`): they count as installed, so the first [`Self::apply`]
    /// removes those no longer wanted and keeps the others without a
    /// flap.
    pub async fn open(netlink: Netlink, config: &Announce) -> Result<Routes, NetlinkError> {
        let index = netlink.link_index(&config.interface).await?;
        let owner = owner(config);
        let installed = netlink
            .owned_host_routes(owner)
            .await?
            .into_iter()
            .collect();
        Ok(Routes {
            netlink,
            owner,
            interface: config.interface.clone(),
            index,
            installed,
        })
    }

    pub fn owner(&self) -> RouteOwner {
        self.owner
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn installed(&self) -> &HashSet<IpAddr> {
        &self.installed
    }

    /// Re-read what the table holds (a route deleted or added by hand,
    /// or a daemon's flush): the next [`Self::apply`] corrects it.
    pub async fn resync(&mut self) -> Result<(), NetlinkError> {
        self.installed = self
            .netlink
            .owned_host_routes(self.owner)
            .await?
            .into_iter()
            .collect();
        Ok(())
    }

    /// Make the table hold exactly `wanted`.
    pub async fn apply(&mut self, wanted: &HashSet<IpAddr>) -> Changes {
        let mut changes = Changes::default();
        let mut stale: Vec<IpAddr> = self.installed.difference(wanted).copied().collect();
        stale.sort();
        for address in stale {
            match self.netlink.remove_host_route(self.owner, address).await {
                Ok(()) => {
                    self.installed.remove(&address);
                    changes.removed.push(address);
                }
                Err(e) => changes.errors.push(e),
            }
        }
        let mut missing: Vec<IpAddr> = wanted.difference(&self.installed).copied().collect();
        missing.sort();
        for address in missing {
            match self
                .netlink
                .add_host_route(self.owner, address, self.index)
                .await
            {
                Ok(()) => {
                    self.installed.insert(address);
                    changes.added.push(address);
                }
                Err(e) => changes.errors.push(e),
            }
        }
        changes
    }
}

/// `lb unload`: remove every route of `config`'s owner, with no agent
/// running. Returns the addresses removed.
pub async fn remove_all(config: &Announce) -> Result<Vec<IpAddr>, NetlinkError> {
    let netlink = Netlink::new()?;
    let owner = owner(config);
    let mut removed = netlink.owned_host_routes(owner).await?;
    removed.sort();
    for &address in &removed {
        netlink.remove_host_route(owner, address).await?;
    }
    Ok(removed)
}
