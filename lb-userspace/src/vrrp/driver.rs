//! The VRRP driver: the one tokio task that owns every instance's state
//! machine and carries out what they decide. It feeds received adverts
//! through decode, validation and the state machine, runs a single timer
//! (the earliest of the machines' deadlines), moves the virtual addresses
//! through netlink, announces them (gratuitous ARP / unsolicited NA),
//! queues the notify and fence scripts, keeps the counters and publishes
//! every instance's status on a `watch` channel. It also follows each
//! interface's link state and addresses: an instance whose interface is
//! down or has no address to advertise from is in FAULT (from start-up
//! on), the advert source is looked up again whenever they change, and a
//! reload's live changes (instances changed, added, removed) land here.
//!
//! One task for all instances rather than one per interface: sync groups
//! span interfaces (NAT's client-side and server-side addresses), and one
//! owner of every machine applies a group's change in one step, with no
//! messages between tasks that could interleave. The blocking-free parts
//! around it are small tasks of their own: one receiver per socket (it
//! only forwards packets), one forwarder per link and address watch, and the
//! announcement blocks (the second block waits `garp_delay`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    announce::Announcer,
    codec,
    notify::Notifier,
    reconfig::Plan,
    socket::{self, Family, Received, VrrpSocket},
    state::{Action, Machine, Params, State},
    sync::{Directive, SyncGroups},
    validate, CommandError, VrrpError,
};
use crate::{
    config::{VrrpInstance, VrrpSyncGroup},
    netlink::Netlink,
    status::{VrrpStatus, VrrpTransition},
};

/// At most one fence run per instance in this long: a peer that never
/// yields would otherwise be fenced at every advert.
const FENCE_HOLDOFF: Duration = Duration::from_secs(30);
/// Packets waiting for the driver; adverts are rare, this only absorbs a
/// burst while the driver talks to netlink.
const PACKET_QUEUE: usize = 256;
/// IPv4 / IPv6 header bytes in front of an advert, for the MTU check.
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

/// What the handle asks of the driver.
pub(crate) enum Command {
    Handoff {
        instance: Option<String>,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    Resume {
        instance: Option<String>,
        reply: oneshot::Sender<Result<String, CommandError>>,
    },
    /// Names of the virtual servers whose real servers are all down.
    TrackedDown(HashSet<String>),
    /// A reload's changes, already found live-safe by `reconfig::plan`.
    Reconfigure {
        plan: Plan,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// One socket: an interface, a family and, in unicast mode, a source.
struct Link {
    ifindex: u32,
    interface: String,
    family: Family,
    socket: Arc<VrrpSocket>,
    /// Where our adverts come from: the tie-break address, and the one
    /// the v3 checksum is computed with. `None` while the interface has
    /// no usable address: its instances are in FAULT meanwhile.
    source: Option<IpAddr>,
    /// The configured `unicast_source`: never looked up again.
    fixed: bool,
    /// The interface is up and running (the link watch's last word).
    up: bool,
}

impl Link {
    /// Why this link's instances cannot run now, if they cannot.
    fn fault(&self) -> Option<String> {
        if !self.up {
            Some("interface down".into())
        } else if self.source.is_none() {
            Some(format!(
                "no {} on {}",
                self.family.source_kind(),
                self.interface
            ))
        } else {
            None
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: u64,
    received: u64,
    rejected: BTreeMap<String, u64>,
    conflicts: u64,
}

struct Instance {
    cfg: VrrpInstance,
    machine: Machine,
    link: usize,
    announcer: Arc<Announcer>,
    notifier: Notifier,
    counters: Counters,
    last_transition: Option<VrrpTransition>,
    /// The running announcement blocks, stopped when the addresses go.
    announcing: Option<JoinHandle<()>>,
    last_fence: Option<Instant>,
}

struct Group {
    cfg: VrrpSyncGroup,
    notifier: Notifier,
    /// The state the group's scripts were last run for.
    notified: Option<State>,
}

/// The sending ends of [`Inputs`].
struct Senders {
    packets: mpsc::Sender<(usize, Received)>,
    links: mpsc::Sender<(u32, bool)>,
    addresses: mpsc::Sender<u32>,
}

/// The channels the helper tasks feed.
pub(crate) struct Inputs {
    packets: mpsc::Receiver<(usize, Received)>,
    links: mpsc::Receiver<(u32, bool)>,
    /// Interfaces whose addresses changed.
    addresses: mpsc::Receiver<u32>,
}

pub(crate) struct Driver {
    netlink: Netlink,
    links: Vec<Link>,
    /// What each link was opened for (see [`Driver::add_instance`]).
    link_keys: Vec<(String, Family, bool, Option<IpAddr>)>,
    /// One per interface index, shared by its instances.
    announcers: HashMap<u32, Arc<Announcer>>,
    /// For the helper tasks of links opened later (a reload).
    senders: Senders,
    /// The sync groups as configured, to rebuild `sync` when instances
    /// come or go.
    group_cfgs: Vec<VrrpSyncGroup>,
    instances: Vec<Instance>,
    sync: SyncGroups,
    groups: Vec<Group>,
    status: watch::Sender<Vec<VrrpStatus>>,
    /// Receivers and watch forwarders, stopped when the driver is
    /// dropped; added to when a reload opens a new link.
    helpers: Helpers,
}

/// Tasks that must not outlive their owner (also when `open` fails
/// half-way: the receivers hold sockets).
#[derive(Default)]
struct Helpers(Vec<JoinHandle<()>>);

impl Drop for Helpers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for i in &self.instances {
            if let Some(a) = &i.announcing {
                a.abort();
            }
        }
    }
}

impl Driver {
    /// Opens the sockets, resolves the interfaces, removes virtual
    /// addresses a crashed run left behind, and builds the machines (not
    /// started yet: [`Driver::run`] starts them).
    pub(crate) async fn open(
        instances: &[VrrpInstance],
        groups: &[VrrpSyncGroup],
        status: watch::Sender<Vec<VrrpStatus>>,
    ) -> Result<(Driver, Inputs), VrrpError> {
        let netlink = Netlink::new()?;
        let (packet_tx, packets) = mpsc::channel(PACKET_QUEUE);
        let (link_tx, links_rx) = mpsc::channel(16);
        let (address_tx, addresses_rx) = mpsc::channel(16);
        let mut driver = Driver {
            netlink,
            links: Vec::new(),
            link_keys: Vec::new(),
            announcers: HashMap::new(),
            senders: Senders {
                packets: packet_tx,
                links: link_tx,
                addresses: address_tx,
            },
            sync: SyncGroups::default(),
            group_cfgs: groups.to_vec(),
            groups: groups
                .iter()
                .map(|g| Group {
                    cfg: g.clone(),
                    notifier: Notifier::new(format!("sync group {}", g.name)),
                    notified: None,
                })
                .collect(),
            instances: Vec::new(),
            status,
            helpers: Helpers::default(),
        };
        for cfg in instances {
            let exclude = virtual_addresses_on(instances, &cfg.interface);
            driver.add_instance(cfg, &exclude).await?;
        }
        driver.sync = SyncGroups::new(instances, groups);
        driver.publish();
        let inputs = Inputs {
            packets,
            links: links_rx,
            addresses: addresses_rx,
        };
        Ok((driver, inputs))
    }

    /// Builds instance `cfg` (not started): its interface's socket and
    /// watches unless another instance opened them, leftovers removed.
    /// `exclude`: the virtual addresses on its interface (never a source).
    async fn add_instance(
        &mut self,
        cfg: &VrrpInstance,
        exclude: &[IpAddr],
    ) -> Result<(), VrrpError> {
        let info = self.netlink.link(cfg.interface.as_str()).await?;
        check_advert_size(cfg, info.mtu)?;
        let family = if cfg.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        };
        // Before the source is chosen: a left-over virtual address
        // must not become the source of our adverts.
        remove_leftovers(&self.netlink, cfg, info.index).await;
        let unicast = !cfg.unicast_peers.is_empty();
        // Interface, family, multicast or unicast, unicast source: a
        // unicast socket joins no group, so it cannot serve a multicast
        // instance.
        let key = (cfg.interface.clone(), family, unicast, cfg.unicast_source);
        let link = match self.link_keys.iter().position(|k| *k == key) {
            Some(l) => l,
            None => {
                let mut l = open_link(&self.netlink, cfg, info.index, family, exclude).await?;
                l.up = info.up;
                let receiver = spawn_receiver(
                    self.links.len(),
                    l.socket.clone(),
                    self.senders.packets.clone(),
                );
                self.helpers.0.push(receiver);
                if !self.announcers.contains_key(&info.index) {
                    let watch = self.netlink.watch_link(info.index).await?;
                    let links = self.senders.links.clone();
                    self.helpers
                        .0
                        .push(spawn_forwarder(watch.into_receiver(), links));
                    let watch = self.netlink.watch_addresses(info.index).await?;
                    let addresses = self.senders.addresses.clone();
                    self.helpers
                        .0
                        .push(spawn_forwarder(watch.into_receiver(), addresses));
                }
                self.links.push(l);
                self.link_keys.push(key);
                self.links.len() - 1
            }
        };
        let announcer = match self.announcers.get(&info.index) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(Announcer::new(info.index, info.mac)?);
                self.announcers.insert(info.index, a.clone());
                a
            }
        };
        let primary = self.links[link].source.unwrap_or(unspecified(family));
        self.instances.push(Instance {
            machine: Machine::new(Params::from(cfg), primary),
            cfg: cfg.clone(),
            link,
            announcer,
            notifier: Notifier::new(cfg.name.clone()),
            counters: Counters::default(),
            last_transition: None,
            announcing: None,
            last_fence: None,
        });
        Ok(())
    }

    /// Starts every machine, then serves packets, link changes, commands
    /// and the timer until a shutdown (or the handle is dropped, which is
    /// a shutdown too).
    pub(crate) async fn run(
        mut self,
        mut inputs: Inputs,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        for i in 0..self.instances.len() {
            self.start_instance(i).await;
        }
        loop {
            self.publish();
            let deadline = self.next_deadline();
            let timer = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((link, packet)) = inputs.packets.recv() => self.on_packet(link, packet).await,
                Some((ifindex, up)) = inputs.links.recv() => self.on_link(ifindex, up).await,
                Some(ifindex) = inputs.addresses.recv() => self.on_addresses(ifindex).await,
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        self.publish();
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command).await,
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                _ = timer => self.on_timers().await,
            }
        }
    }

    /// Leaves `Init`: backup (master for an owner), or FAULT when the
    /// interface cannot carry VRRP yet.
    async fn start_instance(&mut self, i: usize) {
        let now = Instant::now();
        let actions = match self.links[self.instances[i].link].fault() {
            Some(why) => {
                tracing::warn!(
                    "VRRP {}: starts in FAULT: {why}; it joins the election once that is \
                     resolved",
                    self.instances[i].cfg.name
                );
                self.instances[i].machine.fault(now, &why)
            }
            None => self.instances[i].machine.start(now),
        };
        self.step(i, actions).await;
    }

    /// A reload: removed instances stop as at a clean stop (a master
    /// sends priority 0 and removes its addresses), changed ones take
    /// their new settings, added ones start as at `lb run`. Only an
    /// added instance can fail (its interface or socket); the others are
    /// applied regardless and the failures reported.
    async fn reconfigure(&mut self, plan: Plan) -> Result<(), CommandError> {
        let now = Instant::now();
        for name in &plan.removed {
            let Some(i) = self.instances.iter().position(|x| &x.cfg.name == name) else {
                continue;
            };
            let actions = self.instances[i].machine.shutdown(now);
            // Not `step`: a removed instance is in no sync group (a group
            // change needs a restart).
            self.apply(i, actions).await;
            tracing::info!("VRRP {name}: removed by the reload");
            if let Some(a) = self.instances.remove(i).announcing {
                a.abort();
            }
        }
        for cfg in plan.changed {
            let Some(i) = self.instances.iter().position(|x| x.cfg.name == cfg.name) else {
                continue;
            };
            tracing::info!("VRRP {}: new settings from the reload", cfg.name);
            let params = Params::from(&cfg);
            self.instances[i].cfg = cfg;
            let actions = self.instances[i].machine.reconfigure(params, now);
            self.step(i, actions).await;
        }
        let mut failed = Vec::new();
        for cfg in &plan.added {
            let mut exclude = self.virtual_addresses_on_name(&cfg.interface);
            exclude.extend(cfg.all_addresses().map(|a| a.address));
            match self.add_instance(cfg, &exclude).await {
                Ok(()) => {
                    tracing::info!("VRRP {}: added by the reload", cfg.name);
                    self.start_instance(self.instances.len() - 1).await;
                }
                Err(e) => failed.push((cfg.name.clone(), e)),
            }
        }
        let cfgs: Vec<VrrpInstance> = self.instances.iter().map(|x| x.cfg.clone()).collect();
        self.sync = SyncGroups::new(&cfgs, &self.group_cfgs);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CommandError::NotAdded(failed))
        }
    }

    fn virtual_addresses_on_name(&self, interface: &str) -> Vec<IpAddr> {
        self.instances
            .iter()
            .filter(|i| i.cfg.interface == interface)
            .flat_map(|i| i.cfg.all_addresses().map(|a| a.address))
            .collect()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter_map(|i| i.machine.next_deadline())
            .min()
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.instances.len() {
            if self.instances[i]
                .machine
                .next_deadline()
                .is_some_and(|d| d <= now)
            {
                let actions = self.instances[i].machine.on_timer(now);
                self.step(i, actions).await;
            }
        }
    }

    async fn on_packet(&mut self, link: usize, packet: Received) {
        if Some(packet.src) == self.links[link].source {
            return; // our own advert, looped back
        }
        let members: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].link == link)
            .collect();
        let advert = match codec::decode(&packet.payload, packet.src, packet.dst) {
            Ok(a) => a,
            Err(e) => {
                // Charge it to the instance its VRID byte names, if any.
                let vrid = packet.payload.get(1).copied();
                let named: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| Some(self.instances[i].cfg.virtual_router_id) == vrid)
                    .collect();
                let targets = if named.is_empty() { members } else { named };
                for i in targets {
                    self.reject(i, e.reason(), &e.to_string(), packet.src);
                }
                return;
            }
        };
        let Some(i) = members
            .iter()
            .copied()
            .find(|&i| self.instances[i].cfg.virtual_router_id == advert.vrid)
        else {
            // Another router's group on the same segment: counted, not logged.
            for i in members {
                *self.instances[i]
                    .counters
                    .rejected
                    .entry("vrid".into())
                    .or_default() += 1;
            }
            return;
        };
        let inst = &self.instances[i];
        if let Err(e) = validate::validate(&inst.cfg, &advert, packet.src, packet.ttl_or_hoplimit) {
            self.reject(i, e.reason(), &e.to_string(), packet.src);
            return;
        }
        self.instances[i].counters.received += 1;
        let actions = self.instances[i].machine.on_advert(
            Instant::now(),
            packet.src,
            advert.priority,
            advert.advert_interval,
        );
        self.step(i, actions).await;
    }

    fn reject(&mut self, i: usize, reason: &str, detail: &str, src: IpAddr) {
        let inst = &mut self.instances[i];
        let n = inst.counters.rejected.entry(reason.into()).or_default();
        *n += 1;
        // The 1st, 2nd, 4th, 8th... of each kind: a steady stream of bad
        // adverts cannot flood the log, a new kind is always seen.
        if n.is_power_of_two() {
            tracing::warn!(
                "VRRP {}: ignored an advert from {src}: {detail} ({reason}, {n} so far)",
                inst.cfg.name
            );
        }
    }

    async fn on_link(&mut self, ifindex: u32, up: bool) {
        for l in 0..self.links.len() {
            if self.links[l].ifindex == ifindex {
                self.links[l].up = up;
                // The address may have changed while the link was down.
                self.refresh(l).await;
            }
        }
    }

    async fn on_addresses(&mut self, ifindex: u32) {
        for l in 0..self.links.len() {
            if self.links[l].ifindex == ifindex {
                self.refresh(l).await;
            }
        }
    }

    /// Looks the source of link `l` up again (unless it is the fixed
    /// unicast source), re-pins it, and moves the link's instances into
    /// or out of FAULT as the link's state and source say.
    async fn refresh(&mut self, l: usize) {
        let link = &self.links[l];
        if !link.fixed {
            let name = &link.interface;
            let exclude = self.virtual_addresses_on(link.ifindex);
            match self.netlink.addresses(link.ifindex).await {
                Ok(list) => {
                    let source = socket::pick_source(&list, link.family, &exclude);
                    if source != link.source {
                        self.set_source(l, source);
                    }
                }
                // Keep the last one: a failed read says nothing about it.
                Err(e) => tracing::warn!("VRRP on {name}: {e}"),
            }
        }
        let fault = self.links[l].fault();
        let source = self.links[l].source;
        let now = Instant::now();
        for i in 0..self.instances.len() {
            if self.instances[i].link != l {
                continue;
            }
            let machine = &mut self.instances[i].machine;
            if let Some(s) = source {
                machine.set_primary(s);
            }
            let actions = match &fault {
                Some(why) => machine.fault(now, why),
                None => {
                    let why = match source {
                        Some(s) if !self.links[l].fixed => {
                            format!("{} up, adverts from {s}", self.links[l].interface)
                        }
                        _ => format!("{} up", self.links[l].interface),
                    };
                    machine.clear_fault(now, &why)
                }
            };
            self.step(i, actions).await;
        }
    }

    fn set_source(&mut self, l: usize, source: Option<IpAddr>) {
        let link = &mut self.links[l];
        let shown = |s: Option<IpAddr>| s.map_or("none".to_string(), |s| s.to_string());
        tracing::info!(
            "VRRP on {}: advert source {} -> {}",
            link.interface,
            shown(link.source),
            shown(source)
        );
        if let Some(s) = source {
            // Same family by construction (pick_source filters on it).
            if let Err(e) = link.socket.set_source(s) {
                tracing::error!("VRRP on {}: {e}", link.interface);
                return;
            }
        }
        link.source = source;
    }

    /// Every virtual address of the instances on interface `ifindex`:
    /// never an advert source.
    fn virtual_addresses_on(&self, ifindex: u32) -> Vec<IpAddr> {
        self.instances
            .iter()
            .filter(|i| self.links[i.link].ifindex == ifindex)
            .flat_map(|i| i.cfg.all_addresses().map(|a| a.address))
            .collect()
    }

    /// Carries out `actions` of instance `i`, then what its sync group
    /// asks of the other members because of its transitions.
    async fn step(&mut self, i: usize, actions: Vec<Action>) {
        let transitions = self.apply(i, actions).await;
        for (from, to) in transitions {
            let states: Vec<State> = self.instances.iter().map(|x| x.machine.state()).collect();
            let name = self.instances[i].cfg.name.clone();
            let directives = self.sync.react(i, from, to, &states, &name);
            let now = Instant::now();
            for d in directives {
                let (member, actions) = match d {
                    Directive::Follow { member, to, reason } => (
                        member,
                        self.instances[member].machine.follow(to, now, &reason),
                    ),
                    Directive::Hold {
                        member,
                        held,
                        reason,
                    } => (
                        member,
                        self.instances[member].machine.set_held(held, now, &reason),
                    ),
                };
                // Transitions a directive caused are not fed back.
                self.apply(member, actions).await;
            }
            self.notify_group(i);
        }
    }

    /// Carries out `actions`; returns the transitions among them.
    async fn apply(&mut self, i: usize, actions: Vec<Action>) -> Vec<(State, State)> {
        let mut transitions = Vec::new();
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(i, priority).await,
                Action::AddAddresses => self.add_addresses(i).await,
                Action::RemoveAddresses => self.remove_addresses(i).await,
                Action::Announce => self.announce(i),
                Action::Transition { from, to, reason } => {
                    self.on_transition(i, from, to, reason);
                    transitions.push((from, to));
                }
                Action::Conflict { other } => self.on_conflict(i, other),
            }
        }
        transitions
    }

    async fn send_advert(&mut self, i: usize, priority: u8) {
        let inst = &self.instances[i];
        let link = &self.links[inst.link];
        // No source: the instance is in FAULT and sends nothing; a
        // priority 0 at shutdown has nowhere to come from either.
        let Some(source) = link.source else {
            return;
        };
        let advert = validate::advert_for(&inst.cfg, priority, inst.cfg.advert_interval);
        let destinations = if inst.cfg.unicast_peers.is_empty() {
            vec![link.family.group()]
        } else {
            inst.cfg.unicast_peers.clone()
        };
        let mut sent = false;
        for dst in destinations {
            let bytes = codec::encode(&advert, source, dst);
            match link.socket.send(dst, &bytes).await {
                Ok(()) => sent = true,
                Err(e) => tracing::warn!("VRRP {}: {e}", inst.cfg.name),
            }
        }
        if sent {
            self.instances[i].counters.sent += 1;
        }
    }

    async fn add_addresses(&mut self, i: usize) {
        let inst = &self.instances[i];
        let ifindex = self.links[inst.link].ifindex;
        for a in inst.cfg.all_addresses() {
            if let Err(e) = self
                .netlink
                .add_address(ifindex, a.address, a.prefix_len)
                .await
            {
                tracing::error!("VRRP {}: {e}", inst.cfg.name);
            }
        }
    }

    async fn remove_addresses(&mut self, i: usize) {
        if let Some(a) = self.instances[i].announcing.take() {
            a.abort();
        }
        let inst = &self.instances[i];
        let ifindex = self.links[inst.link].ifindex;
        for a in inst.cfg.all_addresses() {
            if let Err(e) = self
                .netlink
                .remove_address(ifindex, a.address, a.prefix_len)
                .await
            {
                tracing::error!("VRRP {}: {e}", inst.cfg.name);
            }
        }
    }

    /// `garp_repeat` announcements of every address now, and as many
    /// again after `garp_delay` (keepalived's two blocks), in a task of
    /// their own so the second block does not hold the driver.
    fn announce(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        if let Some(a) = inst.announcing.take() {
            a.abort();
        }
        let announcer = inst.announcer.clone();
        let addresses: Vec<IpAddr> = inst.cfg.all_addresses().map(|a| a.address).collect();
        let (repeat, delay, name) = (
            inst.cfg.garp_repeat,
            inst.cfg.garp_delay,
            inst.cfg.name.clone(),
        );
        inst.announcing = Some(tokio::spawn(async move {
            // garp_delay 0: one block only.
            let blocks = if delay.is_zero() { 1 } else { 2 };
            for block in 0..blocks {
                if block == 1 {
                    tokio::time::sleep(delay).await;
                }
                let mut failed = None;
                for _ in 0..repeat {
                    for a in &addresses {
                        if let Err(e) = announcer.announce(*a).await {
                            failed = Some(e);
                        }
                    }
                }
                if let Some(e) = failed {
                    tracing::warn!("VRRP {name}: {e}");
                }
            }
        }));
    }

    fn on_transition(&mut self, i: usize, from: State, to: State, reason: String) {
        let inst = &mut self.instances[i];
        let name = inst.cfg.name.clone();
        tracing::info!("VRRP {name}: {from} -> {to} ({reason})");
        inst.last_transition = Some(VrrpTransition {
            from: from.to_string(),
            to: to.to_string(),
            reason,
            at_unix_ms: unix_ms(),
            ms_ago: 0,
        });
        let script = match to {
            State::Master => &inst.cfg.notify_master,
            State::Backup => &inst.cfg.notify_backup,
            State::Fault => &inst.cfg.notify_fault,
            State::Stopped => &inst.cfg.notify_stop,
            State::Init => &None,
        };
        let timeout = inst.cfg.notify_timeout;
        if let Some(s) = script {
            inst.notifier.notify(s.clone(), Vec::new(), timeout);
        }
        if let Some(s) = &inst.cfg.notify {
            let args = vec![
                "INSTANCE".to_string(),
                name,
                to.keepalived_name().to_string(),
                inst.machine.effective_priority().to_string(),
            ];
            inst.notifier.notify(s.clone(), args, timeout);
        }
    }

    /// Runs the group's scripts once every member has reached the state.
    fn notify_group(&mut self, i: usize) {
        let Some(g) = self.sync.group_index(i) else {
            return;
        };
        let state = self.instances[i].machine.state();
        let all = self
            .sync
            .members(g)
            .iter()
            .all(|&m| self.instances[m].machine.state() == state);
        let group = &mut self.groups[g];
        if !all || group.notified == Some(state) {
            return;
        }
        let script = match state {
            State::Master => &group.cfg.notify_master,
            State::Backup => &group.cfg.notify_backup,
            State::Fault => &group.cfg.notify_fault,
            _ => return,
        };
        group.notified = Some(state);
        tracing::info!("VRRP sync group {}: {state}", group.cfg.name);
        let timeout = self.instances[i].cfg.notify_timeout;
        if let Some(s) = script {
            group.notifier.notify(s.clone(), Vec::new(), timeout);
        }
        if let Some(s) = &group.cfg.notify {
            let args = ["GROUP", &group.cfg.name, state.keepalived_name(), "0"];
            let args = args.iter().map(|a| a.to_string()).collect();
            group.notifier.notify(s.clone(), args, timeout);
        }
    }

    /// Another master that yields to us: a healed partition. The fence
    /// hook (or, without one, `notify_fault`) runs at most once per
    /// [`FENCE_HOLDOFF`].
    fn on_conflict(&mut self, i: usize, other: IpAddr) {
        let inst = &mut self.instances[i];
        inst.counters.conflicts += 1;
        tracing::warn!(
            "VRRP {}: another master, {other}, was active while this node is master \
             (a healed partition?); it has the lower priority or address and must step down",
            inst.cfg.name
        );
        let now = Instant::now();
        if inst
            .last_fence
            .is_some_and(|t| now.duration_since(t) < FENCE_HOLDOFF)
        {
            return;
        }
        inst.last_fence = Some(now);
        let timeout = inst.cfg.notify_timeout;
        let name = inst.cfg.name.clone();
        if let Some(fence) = &inst.cfg.fence {
            let args = vec!["INSTANCE".into(), name, other.to_string()];
            inst.notifier.notify(fence.clone(), args, timeout);
        } else if let Some(fault) = &inst.cfg.notify_fault {
            inst.notifier.notify(fault.clone(), Vec::new(), timeout);
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Handoff { instance, reply } => {
                let r = self.handoff(instance.as_deref(), true).await;
                let _ = reply.send(r);
            }
            Command::Resume { instance, reply } => {
                let r = self.handoff(instance.as_deref(), false).await;
                let _ = reply.send(r);
            }
            Command::TrackedDown(down) => {
                let now = Instant::now();
                for i in 0..self.instances.len() {
                    let tracked = &self.instances[i].cfg.track_virtual_servers;
                    let is_down = tracked.iter().any(|v| down.contains(v));
                    let actions = self.instances[i].machine.set_tracked_down(is_down, now);
                    self.step(i, actions).await;
                }
            }
            Command::Reconfigure { plan, reply } => {
                let r = self.reconfigure(plan).await;
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    /// `handoff` (or `resume` when `give_up` is false) of one instance, or
    /// of all; the members of its sync group go with it, so a group is
    /// never split between the nodes.
    async fn handoff(
        &mut self,
        instance: Option<&str>,
        give_up: bool,
    ) -> Result<String, CommandError> {
        let selected = self.select(instance)?;
        let now = Instant::now();
        let mut lines = Vec::new();
        for i in selected {
            let before = self.instances[i].machine.state();
            let machine = &mut self.instances[i].machine;
            let actions = if give_up {
                machine.handoff(now)
            } else {
                machine.resume(now)
            };
            // Not `step`: every member is handed off itself (each master
            // sends its own priority 0), no sync reaction is wanted.
            self.apply(i, actions).await;
            let inst = &self.instances[i];
            let after = inst.machine.state();
            let what = if give_up { "handed off" } else { "resumed" };
            let name = &inst.cfg.name;
            lines.push(if before == after {
                format!("{name}: {after}, {what}")
            } else {
                format!("{name}: {before} -> {after}, {what}")
            });
        }
        Ok(lines.join("\n"))
    }

    /// Instance indexes for a command: the named one (with its sync
    /// group), or all.
    fn select(&self, instance: Option<&str>) -> Result<Vec<usize>, CommandError> {
        let Some(name) = instance else {
            return Ok((0..self.instances.len()).collect());
        };
        let Some(i) = self.instances.iter().position(|x| x.cfg.name == name) else {
            return Err(CommandError::NoSuchInstance {
                name: name.to_owned(),
                known: self.instances.iter().map(|x| x.cfg.name.clone()).collect(),
            });
        };
        Ok(match self.sync.group_index(i) {
            Some(g) => self.sync.members(g).to_vec(),
            None => vec![i],
        })
    }

    /// A clean stop: masters send priority 0 and remove their addresses,
    /// every instance runs notify_stop; the queued scripts get their
    /// timeout to finish.
    async fn shutdown(&mut self) {
        let now = Instant::now();
        for i in 0..self.instances.len() {
            let actions = self.instances[i].machine.shutdown(now);
            self.apply(i, actions).await;
        }
        let bound = self
            .instances
            .iter()
            .map(|i| i.cfg.notify_timeout)
            .max()
            .unwrap_or_default()
            + Duration::from_secs(1);
        let flush = async {
            for i in &self.instances {
                i.notifier.flush().await;
            }
            for g in &self.groups {
                g.notifier.flush().await;
            }
        };
        if tokio::time::timeout(bound, flush).await.is_err() {
            tracing::warn!(
                "VRRP: notify scripts still running {bound:?} after the stop; not waiting"
            );
        }
    }

    fn publish(&self) {
        let status = self
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| self.status_of(i, inst))
            .collect();
        self.status.send_replace(status);
    }

    fn status_of(&self, i: usize, inst: &Instance) -> VrrpStatus {
        let cfg = &inst.cfg;
        VrrpStatus {
            name: cfg.name.clone(),
            interface: cfg.interface.clone(),
            virtual_router_id: cfg.virtual_router_id,
            version: cfg.version.number(),
            state: inst.machine.state().to_string(),
            priority: cfg.priority,
            effective_priority: inst.machine.advertised_priority(),
            master: inst.machine.master().map(|m| m.to_string()),
            handed_off: inst.machine.handed_off(),
            sync_group: self.sync.group_name(i).map(str::to_string),
            addresses: cfg.all_addresses().map(|a| a.to_string()).collect(),
            last_transition: inst.last_transition.clone(),
            adverts_sent: inst.counters.sent,
            adverts_received: inst.counters.received,
            rejected: inst.counters.rejected.clone(),
            master_conflicts: inst.counters.conflicts,
        }
    }
}

/// The socket of `cfg`'s interface and family, with its source pinned:
/// the unicast source, or the interface's primary address (IPv4) or
/// link-local address (IPv6), never one of `exclude` (the virtual
/// addresses). An interface without one is no error: the link starts
/// with no source, its instances in FAULT until an address appears.
async fn open_link(
    netlink: &Netlink,
    cfg: &VrrpInstance,
    ifindex: u32,
    family: Family,
    exclude: &[IpAddr],
) -> Result<Link, VrrpError> {
    let (source, fixed) = match cfg.unicast_source {
        Some(s) if !cfg.unicast_peers.is_empty() => (Some(s), true),
        _ => {
            let list = netlink.addresses(ifindex).await?;
            (socket::pick_source(&list, family, exclude), false)
        }
    };
    let multicast = cfg.unicast_peers.is_empty();
    let sock = VrrpSocket::open_mode(&cfg.interface, ifindex, family, multicast, source)?;
    Ok(Link {
        ifindex,
        interface: cfg.interface.clone(),
        family,
        socket: Arc::new(sock),
        source,
        fixed,
        up: true,
    })
}

/// The virtual addresses of every instance on `interface`.
fn virtual_addresses_on(instances: &[VrrpInstance], interface: &str) -> Vec<IpAddr> {
    instances
        .iter()
        .filter(|i| i.interface == interface)
        .flat_map(|i| i.all_addresses().map(|a| a.address))
        .collect()
}

/// A stand-in tie-break address until the interface has a real one (the
/// instance is in FAULT meanwhile and compares with nobody).
fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// What can fail in [`Driver::add_instance`] and can be known before
/// anything is applied: the interface is there and the advert fits its
/// MTU (a reload checks the instances it adds with this first).
pub(crate) async fn preflight(instances: &[VrrpInstance]) -> Result<(), VrrpError> {
    let netlink = Netlink::new()?;
    for cfg in instances {
        let info = netlink.link(cfg.interface.as_str()).await?;
        check_advert_size(cfg, info.mtu)?;
    }
    Ok(())
}

/// An advert that does not fit the interface's MTU would be fragmented,
/// and keepalived drops fragments of adverts: refuse it at start.
fn check_advert_size(cfg: &VrrpInstance, mtu: u32) -> Result<(), VrrpError> {
    let (header, address) = if cfg.is_ipv6() {
        (IPV6_HEADER, 16)
    } else {
        (IPV4_HEADER, 4)
    };
    let tail = if cfg.version.number() == 2 {
        codec::AUTH_DATA_LEN
    } else {
        0
    };
    let bytes = header + codec::HEADER_LEN + cfg.virtual_addresses.len() * address + tail;
    if mtu > 0 && bytes > mtu as usize {
        return Err(VrrpError::AdvertTooLarge {
            instance: cfg.name.clone(),
            addresses: cfg.virtual_addresses.len(),
            bytes,
            mtu,
        });
    }
    Ok(())
}

/// keepalived's "removing VIPs" at start: a node that crashed while
/// master left its virtual addresses on the interface; a backup must not
/// keep answering for them.
async fn remove_leftovers(netlink: &Netlink, cfg: &VrrpInstance, ifindex: u32) {
    let present = match netlink.addresses(ifindex).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("VRRP {}: {e}", cfg.name);
            return;
        }
    };
    for a in cfg.all_addresses() {
        if present.iter().any(|(p, _)| *p == a.address) {
            tracing::info!(
                "VRRP {}: removing {a}, left on {} by an earlier run",
                cfg.name,
                cfg.interface
            );
            if let Err(e) = netlink
                .remove_address(ifindex, a.address, a.prefix_len)
                .await
            {
                tracing::warn!("VRRP {}: {e}", cfg.name);
            }
        }
    }
}

fn spawn_receiver(
    link: usize,
    socket: Arc<VrrpSocket>,
    tx: mpsc::Sender<(usize, Received)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match socket.recv().await {
                Ok(packet) => {
                    if tx.send((link, packet)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("VRRP: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

fn spawn_forwarder<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
    tx: mpsc::Sender<T>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(change) = rx.recv().await {
            if tx.send(change).await.is_err() {
                return;
            }
        }
    })
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{VirtualAddress, VrrpVersion};
    use crate::vrrp::validate::tests::instance;

    fn with_addresses(count: u16, ipv6: bool) -> VrrpInstance {
        let mut i = instance();
        i.virtual_addresses = (0..count)
            .map(|n| VirtualAddress {
                address: if ipv6 {
                    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n))
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8))
                },
                prefix_len: 24,
            })
            .collect();
        if ipv6 {
            i.version = VrrpVersion::V3;
        }
        i
    }

    /// 255 IPv4 addresses fit any Ethernet MTU (1056 bytes with v2); IPv6
    /// stops at 90 on a 1500-byte MTU, and the error says what to do.
    #[test]
    fn adverts_must_fit_the_mtu() {
        assert!(check_advert_size(&with_addresses(255, false), 1500).is_ok());
        assert!(check_advert_size(&with_addresses(90, true), 1500).is_ok());
        let e = check_advert_size(&with_addresses(91, true), 1500).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VRRP instance VI_1: 91 virtual addresses make a 1504-byte advert, more than the \
             interface's MTU of 1500; move some to virtual_addresses_excluded (held by the \
             master but not advertised)"
        );
        assert!(check_advert_size(&with_addresses(30, false), 128).is_err());
    }
}
