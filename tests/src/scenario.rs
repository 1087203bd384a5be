//! Ready-made end-to-end set-ups: a topology, nginx on every real server
//! and `lb run` on the balancer with one web service. Panics on failure
//! (with the agent's log), as tests want.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::agent::{lb_bin, Agent, LbConfig, VirtualServer};
use crate::client::{curl, url};
use crate::nginx::Nginx;
use crate::tempdir::TempDir;
use crate::topology::{Forwarding, Topology};

/// Fields drop in order: the agent detaches first, the namespaces go last.
pub struct Web {
    pub agent: Agent,
    /// What the agent was started with (change it and `agent.reload`).
    pub config: LbConfig,
    pub nginx: Vec<Nginx>,
    pub dir: TempDir,
    pub topo: Topology,
}

impl Web {
    /// `forwarding` topology with one real server per weight, nginx on each,
    /// and `lb` balancing VIP:80/tcp over them with `weights`.
    pub fn start(forwarding: Forwarding, weights: &[u32]) -> Web {
        Web::start_with(forwarding, weights, |topo| {
            vec![VirtualServer::tcp(topo, 80, weights)]
        })
    }

    /// Like `start`, with the services chosen by `services`.
    pub fn start_with(
        forwarding: Forwarding,
        weights: &[u32],
        services: impl FnOnce(&Topology) -> Vec<VirtualServer>,
    ) -> Web {
        Web::start_configured(forwarding, weights.len(), |topo, config| {
            config.services = services(topo);
        })
    }

    /// `reals` real servers with nginx on each, and `lb` started with the
    /// config `configure` makes of the default one (one service, VIP:80/tcp
    /// over every real server with weight 1).
    pub fn start_configured(
        forwarding: Forwarding,
        reals: usize,
        configure: impl FnOnce(&Topology, &mut LbConfig),
    ) -> Web {
        let bin = lb_bin();
        let topo = Topology::new(forwarding, reals).expect("building the topology");
        let nginx = topo
            .reals
            .iter()
            .map(|h| Nginx::start(&h.ns, &h.name).expect("starting nginx"))
            .collect();
        let dir = TempDir::new("e2e").expect("temp dir");
        let mut config = LbConfig::new(
            &topo,
            dir.join("lb.sock"),
            vec![VirtualServer::tcp(&topo, 80, &vec![1; reals])],
        );
        configure(&topo, &mut config);
        let agent = Agent::start(&bin, &topo.balancer.ns, dir.path(), &config)
            .unwrap_or_else(|e| panic!("{e:#}\nconfig:\n{}", config.to_toml()));
        Web {
            agent,
            config,
            nginx,
            dir,
            topo,
        }
    }

    pub fn vip_url(&self) -> String {
        url(IpAddr::V4(self.topo.vip), 80, "/")
    }

    /// Requests each real server has logged so far, in order.
    pub fn counts(&self) -> Vec<usize> {
        self.nginx.iter().map(Nginx::requests).collect()
    }

    /// GETs `url` from the client up to `tries` times; how often each real
    /// server answered. Stops early once `expect` distinct servers answered.
    pub fn curl_until(&self, url: &str, expect: usize, tries: usize) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..tries {
            let body = curl(&self.topo.client.ns, url)
                .unwrap_or_else(|e| panic!("{e:#}\nlb log:\n{}", self.agent.log()));
            *seen.entry(body.trim().to_string()).or_default() += 1;
            if seen.len() >= expect {
                break;
            }
        }
        seen
    }

    /// Stops `lb` with SIGTERM, checks that it exited cleanly and left no
    /// XDP program on the balancer's interfaces.
    pub fn finish(self) {
        let Web {
            agent,
            config: _,
            nginx,
            dir,
            topo,
        } = self;
        agent.stop().unwrap_or_else(|e| panic!("{e:#}"));
        for ifname in &topo.interfaces {
            let link = topo
                .balancer
                .ns
                .ip(&["link", "show", ifname])
                .expect("ip link show");
            assert!(
                !link.contains("xdp"),
                "XDP still attached to {ifname} after lb exited:\n{link}"
            );
        }
        drop(nginx);
        drop(dir);
        drop(topo);
    }
}
