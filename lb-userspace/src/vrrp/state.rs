//! The state machine of one VRRP instance (RFC 3768 section 6.4, RFC 5798
//! section 6.4) with keepalived's choices where the RFCs leave room. Pure:
//! every call takes the current time and returns the actions to carry
//! out; the driver owns the clock (one timer at [`Machine::next_deadline`]),
//! the sockets, the addresses and the scripts.
//!
//! keepalived's choices kept here:
//! - every node starts as backup, also with `state = "master"`, unless its
//!   priority is 255 (the address owner), which is master at once;
//! - a master that hears a lower priority (or an equal one from a lower
//!   address) sends an advert at once instead of waiting for its timer;
//! - a preempted master sends no priority 0 advert;
//! - `preempt_delay`: after start-up, or after first hearing a lower
//!   priority master, a backup waits that long before it preempts.
//!
//! Additions: `handoff` (give up mastership with priority 0 and stay
//! backup until `resume`), a sync-group `hold` (stay backup while another
//! member is in fault), and [`Action::Conflict`] when this master hears
//! another master that will yield to it (a healed partition): the driver
//! runs the fence hook.
//!
//! Seeing a healed partition reliably needs one departure from keepalived:
//! a master that yields to a higher advert sends one last advert at its
//! own priority before it steps down. Otherwise, after the heal, whichever
//! advert crosses the link first decides whether the winner ever hears
//! the loser (the loser yields silently when the winner's comes first).
//! The winner raises the conflict only when it has been master for at
//! least one advert interval, so a node that just preempted (and hears the
//! preempted one's last advert) never fences anyone. The extra advert is
//! harmless to keepalived: a master hearing a lower priority answers with
//! an advert ("forcing new election"), a backup resets its timer.

use std::{
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::config::{VrrpInitialState, VrrpInstance, VrrpVersion};

/// The address owner's priority: master at once, never preempted.
pub const OWNER_PRIORITY: u8 = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
    Stopped,
}

impl State {
    /// As `lb status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
            State::Stopped => "stopped",
        }
    }

    /// As keepalived passes it to `notify` scripts.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stopped => "STOP",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority (0: this master gives up).
    SendAdvert {
        priority: u8,
    },
    /// Add every virtual address (advertised and excluded) to the interface.
    AddAddresses,
    RemoveAddresses,
    /// Gratuitous ARPs / unsolicited NAs: `garp_repeat` now and as many
    /// again after `garp_delay`.
    Announce,
    /// The instance changed state: record it, run the notify scripts.
    Transition {
        from: State,
        to: State,
        reason: String,
    },
    /// This master heard another master, which will yield to it: log it,
    /// run `fence` and `notify_fault`.
    Conflict {
        other: IpAddr,
    },
}

/// The part of an instance's config the state machine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub version: VrrpVersion,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub track_weight: u8,
    pub initial_state: VrrpInitialState,
}

impl From<&VrrpInstance> for Params {
    fn from(i: &VrrpInstance) -> Self {
        Params {
            version: i.version,
            priority: i.priority,
            advert_interval: i.advert_interval,
            preempt: i.preempt,
            preempt_delay: i.preempt_delay,
            track_weight: i.track_weight,
            initial_state: i.initial_state,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Machine {
    params: Params,
    /// This node's address the adverts come from: the tie-break between
    /// equal priorities.
    primary: IpAddr,
    state: State,
    /// RFC 5798's Master_Adver_Interval: ours while master or until a
    /// master is heard; a v3 backup adopts the master's.
    master_adver_interval: Duration,
    master: Option<IpAddr>,
    tracked_down: bool,
    handed_off: bool,
    /// A sync group member is in fault: stay backup.
    held: bool,
    master_down_at: Option<Instant>,
    /// Why the master-down timer will have expired, for the transition.
    down_reason: String,
    advert_at: Option<Instant>,
    /// When this node last became master.
    master_since: Option<Instant>,
    /// With `preempt_delay`: lower priority masters are accepted until then.
    preempt_after: Option<Instant>,
}

impl Machine {
    pub fn new(params: Params, primary: IpAddr) -> Machine {
        Machine {
            master_adver_interval: params.advert_interval,
            params,
            primary,
            state: State::Init,
            master: None,
            tracked_down: false,
            handed_off: false,
            held: false,
            master_down_at: None,
            down_reason: String::new(),
            advert_at: None,
            master_since: None,
            preempt_after: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    pub fn handed_off(&self) -> bool {
        self.handed_off
    }

    pub fn primary(&self) -> IpAddr {
        self.primary
    }

    /// The source address changed (the interface's address came late).
    pub fn set_primary(&mut self, primary: IpAddr) {
        self.primary = primary;
        if self.state == State::Master {
            self.master = Some(primary);
        }
    }

    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// The priority this node competes with: the configured one, less
    /// `track_weight` while a tracked virtual server is down (at least 1).
    pub fn effective_priority(&self) -> u8 {
        if self.tracked_down {
            self.params
                .priority
                .saturating_sub(self.params.track_weight)
                .max(1)
        } else {
            self.params.priority
        }
    }

    /// What `lb status` shows: 0 while handed off.
    pub fn advertised_priority(&self) -> u8 {
        if self.handed_off {
            0
        } else {
            self.effective_priority()
        }
    }

    /// (256 - priority) / 256 of the master's advert interval.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.effective_priority())) / 256
    }

    /// 3 x the master's advert interval + the skew time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// When the driver must call [`Machine::on_timer`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backup if !self.inhibited() => self.master_down_at,
            State::Master => self.advert_at,
            _ => None,
        }
    }

    fn inhibited(&self) -> bool {
        self.handed_off || self.held
    }

    /// Leaves `Init`: master at once for the owner, backup otherwise.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Init {
            return Vec::new();
        }
        if !self.params.preempt_delay.is_zero() {
            self.preempt_after = Some(now + self.params.preempt_delay);
        }
        self.enter(now, "start-up")
    }

    fn enter(&mut self, now: Instant, why: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.params.priority == OWNER_PRIORITY && !self.inhibited() {
            self.become_master(
                now,
                &format!("{why}: address owner (priority 255)"),
                &mut out,
            );
        } else {
            self.master = None;
            self.arm_master_down(now, "no master heard after ".to_string() + why);
            self.transition(State::Backup, why.to_string(), &mut out);
        }
        out
    }

    /// An advert that passed validation, from `src`.
    pub fn on_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        priority: u8,
        interval: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup => self.backup_hears(now, src, priority, interval),
            State::Master => self.master_hears(now, src, priority, interval, &mut out),
            State::Init | State::Fault | State::Stopped => {}
        }
        out
    }

    fn backup_hears(&mut self, now: Instant, src: IpAddr, priority: u8, interval: Duration) {
        if priority == 0 {
            // The master gives up: take over after the skew time only, so
            // the highest priority backup goes first.
            self.master = None;
            let skew = self.skew_time();
            self.master_down_at = Some(now + skew);
            self.down_reason = format!("priority 0 from {src}");
            return;
        }
        let ours = self.effective_priority();
        let lower = priority < ours;
        // Shown in the status even when we are about to preempt it.
        self.master = Some(src);
        if lower && self.params.preempt && !self.inhibited() && !self.delaying_preemption(now) {
            // Ignored: our master-down timer runs out and we preempt.
            self.down_reason = format!("preempting {src}: priority {priority}, ours {ours}");
            return;
        }
        if !lower {
            self.preempt_after = None;
        }
        self.adopt_interval(interval);
        self.arm_master_down(now, format!("no advert from master {src}"));
    }

    fn delaying_preemption(&mut self, now: Instant) -> bool {
        if self.params.preempt_delay.is_zero() {
            return false;
        }
        let until = *self
            .preempt_after
            .get_or_insert(now + self.params.preempt_delay);
        now < until
    }

    fn master_hears(
        &mut self,
        now: Instant,
        src: IpAddr,
        priority: u8,
        interval: Duration,
        out: &mut Vec<Action>,
    ) {
        let ours = self.effective_priority();
        if priority == 0 {
            // Someone gave up although we are master: remind the group.
            self.send_advert(now, out);
            return;
        }
        if priority > ours || (priority == ours && src > self.primary) {
            // The last advert, so a winner that has been master all along
            // learns there were two of us (see the module doc).
            out.push(Action::SendAdvert { priority: ours });
            self.adopt_interval(interval);
            let reason = if priority > ours {
                format!("higher priority {priority} from {src}, ours {ours}")
            } else {
                format!("same priority {priority} from higher address {src}")
            };
            self.become_backup(now, reason, out);
            self.master = Some(src);
            return;
        }
        // Another master that must yield to us: answer at once so it
        // steps down now rather than at our next advert.
        self.send_advert(now, out);
        let settled = self
            .master_since
            .is_some_and(|t| now.duration_since(t) >= self.params.advert_interval);
        if settled {
            out.push(Action::Conflict { other: src });
        }
    }

    fn adopt_interval(&mut self, interval: Duration) {
        if self.params.version == VrrpVersion::V3 && !interval.is_zero() {
            self.master_adver_interval = interval;
        }
    }

    /// The single timer fired (the driver may call it early or late; it
    /// acts on what is due at `now`).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let due = self.next_deadline().is_some_and(|d| d <= now);
        match self.state {
            State::Backup if due => {
                let reason = format!("master down timer expired ({})", self.down_reason);
                self.become_master(now, &reason, &mut out);
            }
            State::Master if due => self.send_advert(now, &mut out),
            _ => {}
        }
        out
    }

    fn send_advert(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.effective_priority(),
        });
        self.advert_at = Some(now + self.params.advert_interval);
    }

    fn become_master(&mut self, now: Instant, reason: &str, out: &mut Vec<Action>) {
        self.master_adver_interval = self.params.advert_interval;
        self.master_down_at = None;
        self.preempt_after = None;
        self.master = Some(self.primary);
        self.master_since = Some(now);
        // keepalived's order: the advert first, then the addresses and
        // the gratuitous ARPs that move the clients.
        self.send_advert(now, out);
        out.push(Action::AddAddresses);
        out.push(Action::Announce);
        self.transition(State::Master, reason.to_string(), out);
    }

    fn become_backup(&mut self, now: Instant, reason: String, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::RemoveAddresses);
        }
        self.advert_at = None;
        self.arm_master_down(now, "no advert after stepping down".into());
        self.transition(State::Backup, reason, out);
    }

    fn arm_master_down(&mut self, now: Instant, why: String) {
        self.master_down_at = Some(now + self.master_down_interval());
        self.down_reason = why;
    }

    fn transition(&mut self, to: State, reason: String, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        if from != to {
            out.push(Action::Transition { from, to, reason });
        }
    }

    /// A tracked virtual server went down (all its real servers) or came
    /// back: the priority changes; a master says so at once.
    pub fn set_tracked_down(&mut self, down: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.tracked_down != down {
            self.tracked_down = down;
            if self.state == State::Master {
                self.send_advert(now, &mut out);
            }
        }
        out
    }

    /// A reload changed the instance's live settings (priority, advert
    /// interval, preemption, tracking weight). A master advertises the new
    /// values at once (a lower priority lets a peer preempt now, not at
    /// the next advert); a backup's running master-down timer stands, the
    /// next advert re-arms it with the new values.
    pub fn reconfigure(&mut self, params: Params, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let interval_changed = params.advert_interval != self.params.advert_interval;
        self.params = params;
        if interval_changed && (self.state == State::Master || self.master.is_none()) {
            self.master_adver_interval = self.params.advert_interval;
        }
        if self.state == State::Master {
            self.send_advert(now, &mut out);
        }
        out
    }

    /// Planned handoff: a master gives up at once (priority 0, so the
    /// backup takes over after its skew time) and every state stays
    /// backup, deaf to the master-down timer, until [`Machine::resume`].
    pub fn handoff(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.handed_off = true;
        if self.state == State::Master {
            out.push(Action::SendAdvert { priority: 0 });
            self.become_backup(now, "handoff".into(), &mut out);
            self.master = None;
        }
        out
    }

    /// Ends a handoff: normal behaviour again (a backup that hears no
    /// master takes over after the master-down interval; preemption).
    pub fn resume(&mut self, now: Instant) -> Vec<Action> {
        if self.handed_off {
            self.handed_off = false;
            if self.state == State::Backup && !self.held {
                self.arm_master_down(now, "resume".into());
            }
        }
        Vec::new()
    }

    /// Sync group: another member is in fault, so this one must not be
    /// master (`true`), or no longer (`false`).
    pub fn set_held(&mut self, held: bool, now: Instant, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.held == held {
            return out;
        }
        self.held = held;
        match (held, self.state) {
            (true, State::Master) => self.become_backup(now, reason.to_string(), &mut out),
            (false, State::Backup) if !self.handed_off => {
                self.arm_master_down(now, reason.to_string())
            }
            _ => {}
        }
        out
    }

    /// Sync group: another member changed state; follow it to master or
    /// backup. A member in fault, held or handed off does not follow to
    /// master; a forced step-down is silent, as a preempted master's.
    pub fn follow(&mut self, to: State, now: Instant, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        match (to, self.state) {
            (State::Master, State::Backup) if !self.inhibited() => {
                self.become_master(now, reason, &mut out)
            }
            (State::Backup, State::Master) => self.become_backup(now, reason.to_string(), &mut out),
            _ => {}
        }
        out
    }

    /// The interface went down: no adverts can be sent or heard.
    pub fn interface_down(&mut self, now: Instant) -> Vec<Action> {
        self.fault(now, "interface down")
    }

    /// The interface is up again: elect as at start-up.
    pub fn interface_up(&mut self, now: Instant) -> Vec<Action> {
        self.clear_fault(now, "interface up")
    }

    /// The instance cannot take part (interface down, or no address to
    /// send adverts from): FAULT, a master's addresses removed. Also from
    /// `Init`: an instance whose interface is not usable at start-up goes
    /// there directly, as keepalived does, and `reason` says why.
    pub fn fault(&mut self, _now: Instant, reason: &str) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.state, State::Fault | State::Stopped) {
            return out;
        }
        if self.state == State::Master {
            out.push(Action::RemoveAddresses);
        }
        self.master_down_at = None;
        self.advert_at = None;
        self.master = None;
        self.transition(State::Fault, reason.into(), &mut out);
        out
    }

    /// What kept the instance in FAULT is gone: elect as at start-up.
    pub fn clear_fault(&mut self, now: Instant, why: &str) -> Vec<Action> {
        if self.state != State::Fault {
            return Vec::new();
        }
        self.enter(now, why)
    }

    /// A clean stop: a master gives up with priority 0 and removes its
    /// addresses; every instance ends `Stopped` (notify_stop).
    pub fn shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::SendAdvert { priority: 0 });
            out.push(Action::RemoveAddresses);
        }
        self.master_down_at = None;
        self.advert_at = None;
        self.master = None;
        if self.state != State::Stopped {
            self.transition(State::Stopped, "shutdown".into(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const US: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2));
    const LOWER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
    const HIGHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 3));
    const SEC: Duration = Duration::from_secs(1);

    fn params(priority: u8) -> Params {
        Params {
            version: VrrpVersion::V2,
            priority,
            advert_interval: SEC,
            preempt: true,
            preempt_delay: Duration::ZERO,
            track_weight: 0,
            initial_state: VrrpInitialState::Backup,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn transition(to: State) -> impl Fn(&Action) -> bool {
        move |a| matches!(a, Action::Transition { to: t, .. } if *t == to)
    }

    /// A machine with priority `prio` started at `t0`, now backup.
    fn backup(prio: u8, t0: Instant) -> Machine {
        let mut m = Machine::new(params(prio), US);
        let out = m.start(t0);
        assert_eq!(m.state(), State::Backup);
        assert!(out.iter().any(transition(State::Backup)), "{out:?}");
        m
    }

    /// A machine that became master by its timer at t0 + master-down.
    fn master(prio: u8, t0: Instant) -> (Machine, Instant) {
        let mut m = backup(prio, t0);
        let at = m.next_deadline().unwrap();
        m.on_timer(at);
        assert_eq!(m.state(), State::Master);
        (m, at)
    }

    #[test]
    fn timer_values_match_keepalived_measurements() {
        let t0 = Instant::now();
        let m = backup(100, t0);
        // 3 x 1 s + 156/256 s: 3.610 s on the wire in failover-v2-crash.
        assert_eq!(
            m.master_down_interval(),
            Duration::from_nanos(3_609_375_000)
        );
        assert_eq!(
            m.next_deadline(),
            Some(t0 + Duration::from_nanos(3_609_375_000))
        );
        assert_eq!(m.skew_time(), Duration::from_nanos(609_375_000));
        // lb1 (150): 3 + 106/256 = 3.414 s to preempt after a restart.
        let m = backup(150, t0);
        assert_eq!(
            m.master_down_interval(),
            Duration::from_nanos(3_414_062_500)
        );

        let mut v3 = params(100);
        v3.version = VrrpVersion::V3;
        v3.advert_interval = ms(100);
        let mut m = Machine::new(v3, US);
        m.start(t0);
        // 0.3 + 0.1 x 156/256: 0.361 s in vrrpv3-ipv4-100ms.
        assert_eq!(m.master_down_interval(), Duration::from_nanos(360_937_500));
    }

    #[test]
    fn priority_zero_from_the_master_means_takeover_after_the_skew_time() {
        let t0 = Instant::now();
        let mut m = backup(100, t0);
        let t1 = t0 + SEC;
        assert!(m.on_advert(t1, LOWER_IP, 150, SEC).is_empty());
        assert_eq!(m.master(), Some(LOWER_IP));
        assert_eq!(
            m.next_deadline(),
            Some(t1 + Duration::from_nanos(3_609_375_000))
        );
        let t2 = t1 + ms(500);
        m.on_advert(t2, LOWER_IP, 0, SEC);
        assert_eq!(
            m.next_deadline(),
            Some(t2 + Duration::from_nanos(609_375_000))
        );
        assert_eq!(m.master(), None);
        // Early call: nothing happens.
        assert!(m.on_timer(t2 + ms(600)).is_empty());
        let out = m.on_timer(t2 + ms(610));
        assert_eq!(m.state(), State::Master);
        match out.last() {
            Some(Action::Transition { reason, .. }) => {
                assert!(reason.contains("priority 0 from 10.200.0.1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_is_backup_unless_owner() {
        let t0 = Instant::now();
        let mut p = params(150);
        p.initial_state = VrrpInitialState::Master;
        let mut m = Machine::new(p, US);
        m.start(t0);
        assert_eq!(
            m.state(),
            State::Backup,
            "state=master alone does not skip the election"
        );

        let mut owner = Machine::new(params(255), US);
        let out = owner.start(t0);
        assert_eq!(owner.state(), State::Master);
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 255 },
                Action::AddAddresses,
                Action::Announce,
                Action::Transition {
                    from: State::Init,
                    to: State::Master,
                    reason: "start-up: address owner (priority 255)".into()
                },
            ]
        );
        assert_eq!(owner.next_deadline(), Some(t0 + SEC));
        assert_eq!(owner.master(), Some(US));
    }

    #[test]
    fn master_down_timer_makes_master_then_adverts_every_interval() {
        let t0 = Instant::now();
        let mut m = backup(100, t0);
        let at = m.next_deadline().unwrap();
        let out = m.on_timer(at);
        assert_eq!(out[0], Action::SendAdvert { priority: 100 });
        assert_eq!(out[1], Action::AddAddresses);
        assert_eq!(out[2], Action::Announce);
        assert!(transition(State::Master)(&out[3]));
        assert_eq!(m.next_deadline(), Some(at + SEC));
        assert_eq!(
            m.on_timer(at + SEC),
            vec![Action::SendAdvert { priority: 100 }]
        );
        assert_eq!(m.next_deadline(), Some(at + 2 * SEC));
    }

    #[test]
    fn backup_with_preempt_ignores_a_lower_master_and_takes_over() {
        let t0 = Instant::now();
        let mut m = backup(150, t0);
        let deadline = m.next_deadline();
        m.on_advert(t0 + SEC, LOWER_IP, 100, SEC);
        assert_eq!(
            m.next_deadline(),
            deadline,
            "a lower master does not reset the timer"
        );
        m.on_timer(deadline.unwrap());
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn backup_without_preempt_accepts_a_lower_master() {
        let t0 = Instant::now();
        let mut p = params(150);
        p.preempt = false;
        let mut m = Machine::new(p, US);
        m.start(t0);
        let t1 = t0 + SEC;
        m.on_advert(t1, LOWER_IP, 100, SEC);
        assert_eq!(m.next_deadline(), Some(t1 + m.master_down_interval()));
        assert_eq!(m.master(), Some(LOWER_IP));
    }

    #[test]
    fn preempt_delay_accepts_a_lower_master_for_that_long() {
        let t0 = Instant::now();
        let mut p = params(150);
        p.preempt_delay = 10 * SEC;
        let mut m = Machine::new(p, US);
        m.start(t0);
        // Within 10 s of start-up the lower master keeps us backup.
        for s in 1..10 {
            let t = t0 + s * SEC;
            m.on_advert(t, LOWER_IP, 100, SEC);
            assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()), "{s}");
        }
        // From then on it is ignored: we preempt when the timer runs out.
        let t = t0 + 10 * SEC;
        let before = m.next_deadline();
        m.on_advert(t, LOWER_IP, 100, SEC);
        assert_eq!(m.next_deadline(), before);
        m.on_timer(before.unwrap());
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn backup_accepts_equal_priority_whatever_the_address() {
        let t0 = Instant::now();
        let mut m = backup(100, t0);
        let t1 = t0 + SEC;
        m.on_advert(t1, LOWER_IP, 100, SEC);
        assert_eq!(m.next_deadline(), Some(t1 + m.master_down_interval()));
    }

    #[test]
    fn master_steps_down_silently_for_higher_priority() {
        let t0 = Instant::now();
        let (mut m, at) = master(100, t0);
        let t = at + ms(300);
        let out = m.on_advert(t, LOWER_IP, 150, SEC);
        assert_eq!(
            out[0],
            Action::SendAdvert { priority: 100 },
            "the last advert, not 0"
        );
        assert_eq!(out[1], Action::RemoveAddresses);
        assert!(transition(State::Backup)(&out[2]), "{out:?}");
        assert_eq!(out.len(), 3, "no priority 0, no conflict: {out:?}");
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.master(), Some(LOWER_IP));
        assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
    }

    #[test]
    fn equal_priority_is_won_by_the_higher_address() {
        let t0 = Instant::now();
        let (mut m, at) = master(100, t0);
        // A lower address with our priority: we stay and answer at once.
        let t = at + ms(1500);
        let out = m.on_advert(t, LOWER_IP, 100, SEC);
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 100 },
                Action::Conflict { other: LOWER_IP }
            ]
        );
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.next_deadline(), Some(t + SEC));
        // A higher address with our priority wins.
        m.on_advert(t + ms(200), HIGHER_IP, 100, SEC);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn master_answers_a_lower_master_at_once_and_reports_the_conflict() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        // Just preempted: the preempted master's last advert is no conflict.
        let out = m.on_advert(at + ms(10), LOWER_IP, 100, SEC);
        assert_eq!(out, vec![Action::SendAdvert { priority: 150 }]);
        // Master for a while (a healed partition): a conflict.
        let out = m.on_advert(at + 5 * SEC, LOWER_IP, 100, SEC);
        assert_eq!(
            out,
            vec![
                Action::SendAdvert { priority: 150 },
                Action::Conflict { other: LOWER_IP }
            ]
        );
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn master_hearing_priority_zero_sends_an_advert() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        let out = m.on_advert(at + ms(10), LOWER_IP, 0, SEC);
        assert_eq!(out, vec![Action::SendAdvert { priority: 150 }]);
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn tracked_down_lowers_the_priority_and_a_master_says_so_at_once() {
        let t0 = Instant::now();
        let mut p = params(150);
        p.track_weight = 100;
        let mut m = Machine::new(p, US);
        m.start(t0);
        let at = m.next_deadline().unwrap();
        m.on_timer(at);
        let out = m.set_tracked_down(true, at + ms(1));
        assert_eq!(out, vec![Action::SendAdvert { priority: 50 }]);
        assert_eq!(m.effective_priority(), 50);
        // A backup of 100 now wins.
        m.on_advert(at + ms(2), LOWER_IP, 100, SEC);
        assert_eq!(m.state(), State::Backup);
        assert!(m.set_tracked_down(true, at + ms(3)).is_empty(), "no change");
        m.set_tracked_down(false, at + ms(4));
        assert_eq!(m.effective_priority(), 150);

        let mut p = params(50);
        p.track_weight = 100;
        let mut m = Machine::new(p, US);
        m.set_tracked_down(true, t0);
        assert_eq!(m.effective_priority(), 1, "never below 1");
    }

    #[test]
    fn handoff_gives_up_with_priority_zero_and_stays_backup_until_resume() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        let t = at + ms(100);
        let out = m.handoff(t);
        assert_eq!(out[0], Action::SendAdvert { priority: 0 });
        assert_eq!(out[1], Action::RemoveAddresses);
        assert!(
            matches!(&out[2], Action::Transition { to: State::Backup, reason, .. } if reason == "handoff")
        );
        assert!(m.handed_off());
        assert_eq!(m.advertised_priority(), 0);
        assert_eq!(m.next_deadline(), None, "deaf to the master-down timer");
        // The peer becomes master, then dies: we still stay backup.
        m.on_advert(t + SEC, LOWER_IP, 100, SEC);
        assert_eq!(m.master(), Some(LOWER_IP));
        assert!(m.on_timer(t + 60 * SEC).is_empty());
        m.on_advert(t + 61 * SEC, LOWER_IP, 0, SEC);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.state(), State::Backup);
        // Resume: normal again, we preempt the lower master.
        let r = t + 62 * SEC;
        assert!(m.resume(r).is_empty());
        assert_eq!(m.next_deadline(), Some(r + m.master_down_interval()));
        m.on_advert(r + SEC, LOWER_IP, 100, SEC);
        m.on_timer(r + m.master_down_interval());
        assert_eq!(m.state(), State::Master);
    }

    #[test]
    fn handoff_of_a_backup_only_keeps_it_backup() {
        let t0 = Instant::now();
        let mut m = backup(150, t0);
        assert!(m.handoff(t0).is_empty());
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.state(), State::Backup);
    }

    #[test]
    fn shutdown_of_a_master_sends_priority_zero_and_removes_addresses() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        let out = m.shutdown(at);
        assert_eq!(out[0], Action::SendAdvert { priority: 0 });
        assert_eq!(out[1], Action::RemoveAddresses);
        assert!(transition(State::Stopped)(&out[2]));
        assert_eq!(m.next_deadline(), None);
        let mut b = backup(100, t0);
        let out = b.shutdown(t0);
        assert_eq!(out.len(), 1);
        assert!(transition(State::Stopped)(&out[0]));
        assert!(b.shutdown(t0).is_empty(), "once");
    }

    #[test]
    fn interface_down_is_fault_and_up_is_backup() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        let out = m.interface_down(at);
        assert_eq!(out[0], Action::RemoveAddresses);
        assert!(transition(State::Fault)(&out[1]));
        assert_eq!(m.next_deadline(), None);
        assert!(m.on_advert(at, LOWER_IP, 200, SEC).is_empty());
        let t = at + SEC;
        let out = m.interface_up(t);
        assert!(transition(State::Backup)(&out[0]), "{out:?}");
        assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
    }

    #[test]
    fn a_fault_at_start_up_is_left_for_backup() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(100), US);
        let out = m.fault(t0, "no IPv4 address on eth1");
        assert_eq!(
            out,
            vec![Action::Transition {
                from: State::Init,
                to: State::Fault,
                reason: "no IPv4 address on eth1".into()
            }]
        );
        assert_eq!(m.next_deadline(), None);
        assert!(m.start(t0).is_empty(), "start does not leave FAULT");
        let t = t0 + SEC;
        let out = m.clear_fault(t, "address 10.200.0.2 on eth1");
        assert!(transition(State::Backup)(&out[0]), "{out:?}");
        assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
        let mut owner = Machine::new(params(255), US);
        owner.fault(t0, "interface down");
        let out = owner.clear_fault(t, "interface up");
        assert!(out.contains(&Action::AddAddresses), "{out:?}");
        assert_eq!(owner.state(), State::Master);
    }

    #[test]
    fn reconfigure_advertises_a_masters_new_priority_at_once() {
        let t0 = Instant::now();
        let (mut m, at) = master(150, t0);
        let mut p = params(90);
        p.advert_interval = 2 * SEC;
        let out = m.reconfigure(p, at);
        assert_eq!(out, vec![Action::SendAdvert { priority: 90 }]);
        assert_eq!(m.master_adver_interval(), 2 * SEC);
        assert_eq!(m.next_deadline(), Some(at + 2 * SEC));
        let mut b = backup(100, t0);
        assert!(b.reconfigure(params(200), t0).is_empty());
        assert_eq!(b.effective_priority(), 200);
    }

    #[test]
    fn v3_backup_adopts_the_masters_interval() {
        let t0 = Instant::now();
        let mut p = params(100);
        p.version = VrrpVersion::V3;
        p.advert_interval = ms(100);
        let mut m = Machine::new(p, US);
        m.start(t0);
        m.on_advert(t0, LOWER_IP, 150, SEC);
        assert_eq!(m.master_adver_interval(), SEC);
        assert_eq!(
            m.next_deadline(),
            Some(t0 + Duration::from_nanos(3_609_375_000))
        );
        // Once master, it advertises its own interval again.
        m.on_timer(t0 + 4 * SEC);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.master_adver_interval(), ms(100));
        assert_eq!(m.next_deadline(), Some(t0 + 4 * SEC + ms(100)));
    }

    #[test]
    fn sync_follow_and_hold() {
        let t0 = Instant::now();
        let mut m = backup(100, t0);
        let out = m.follow(State::Master, t0, "sync group G1: VI_2 became master");
        assert!(out.contains(&Action::AddAddresses));
        assert_eq!(m.state(), State::Master);
        let out = m.follow(State::Backup, t0, "sync group");
        assert_eq!(out[0], Action::RemoveAddresses);
        assert!(
            !out.iter().any(|a| matches!(a, Action::SendAdvert { .. })),
            "silent"
        );
        let (mut m, at) = master(100, t0);
        let out = m.set_held(true, at, "sync group G1: VI_2 in fault");
        assert_eq!(out[0], Action::RemoveAddresses);
        assert_eq!(m.next_deadline(), None);
        assert!(
            m.follow(State::Master, at, "x").is_empty(),
            "held members do not follow"
        );
        m.set_held(false, at + SEC, "released");
        assert_eq!(m.next_deadline(), Some(at + SEC + m.master_down_interval()));
    }
}
