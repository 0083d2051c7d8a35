//! The upstreams as members of routes: each one's throttled service, the
//! settings its decisions follow, and whether it can take a message now. A
//! member is unavailable while it is on hold, paused (it refused the broker:
//! 401/403), cooling down after a retryable failure, or over a carrier limit.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::policy::{Policy, RetryPolicy};
use super::upstream::{throttled, UpstreamService};
use super::{sandbox, smsgate};
use crate::clock::Clock;
use crate::config::{UpstreamKind, UpstreamSettings};
use crate::metrics::Metrics;
use crate::routing::limits::{Limits, PeriodKind, Usage};
use crate::store::{upstream_lease, Store, StoreError, UsageCharge, UsagePeriod};
use crate::tasks::Tasks;

/// Why a member takes nothing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    Hold,
    /// It refused the broker (credentials, scope): tried again at `until`.
    Paused {
        until: i64,
        reason: String,
    },
    /// A retryable failure: tried again at `until`.
    CoolingDown {
        until: i64,
        reason: String,
    },
    /// A daily or monthly limit is reached.
    OverLimit(String),
    /// Another node of the cluster dispatches for it (it holds the lease).
    Elsewhere,
}

impl Unavailable {
    /// As `/readyz` shows it.
    pub fn state(&self) -> &'static str {
        match self {
            Unavailable::Hold => "hold",
            Unavailable::Paused { .. } => "paused",
            Unavailable::CoolingDown { .. } => "cooling_down",
            Unavailable::OverLimit(_) => "over_limit",
            Unavailable::Elsewhere => "elsewhere",
        }
    }
}

impl Unavailable {
    /// What the upstream said, or which limit is reached.
    pub fn reason(&self) -> String {
        match self {
            Unavailable::Hold => "hold = true in the configuration".to_owned(),
            Unavailable::Elsewhere => {
                "another node of the cluster dispatches for it (it holds the upstream's lease)"
                    .to_owned()
            }
            Unavailable::Paused { reason, .. }
            | Unavailable::CoolingDown { reason, .. }
            | Unavailable::OverLimit(reason) => reason.clone(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Hold => write!(f, "on hold"),
            Unavailable::Paused { reason, .. } => write!(f, "paused: {reason}"),
            Unavailable::CoolingDown { reason, .. } => write!(f, "cooling down: {reason}"),
            Unavailable::OverLimit(reason) => write!(f, "{reason}"),
            Unavailable::Elsewhere => write!(f, "dispatched by another node"),
        }
    }
}

#[derive(Debug)]
struct Condition {
    paused: Option<(i64, String)>,
    cooling: Option<(i64, String)>,
    /// Retryable failures since the last message the member took: how far
    /// along its retry schedule the next cool-down is.
    failures: u32,
    usage: Usage,
    /// Parts reserved per message (outbox id) until the member's answer
    /// settles it: a message whose outcome is unknown keeps its parts, since
    /// the phone may have sent it.
    held: HashMap<i64, u32>,
    /// The last refusal or failure (Unix ms, what it said), and when the
    /// member last took a message: for the console.
    last_error: Option<(i64, String)>,
    last_taken_at: Option<i64>,
}

/// What the console shows of a member's recent life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    /// Messages on their way to it: sent, not yet answered.
    pub in_flight: usize,
    pub last_error: Option<(i64, String)>,
    pub last_taken_at: Option<i64>,
    /// (period, parts used, limit) for each limit set.
    pub limits: Vec<(&'static str, u64, u32)>,
}

/// One upstream, as the routes' dispatchers share it.
pub struct Member {
    pub name: String,
    pub service: UpstreamService,
    /// On hold: sent nothing (configured, or set from the console).
    hold: std::sync::atomic::AtomicBool,
    pub policy: Policy,
    /// Messages claimed for it and not yet answered, at most.
    pub window: usize,
    /// Requests a second at most.
    pub rate: f64,
    /// Requests waiting for an answer at most.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub check_interval: Duration,
    /// On a shared store, the lease this node needs to dispatch for the member:
    /// one node at a time does, so that its rate holds for the cluster.
    lease: Option<(Store, String)>,
    condition: Mutex<Condition>,
}

impl Member {
    /// The member of `settings` behind `service`, with no usage counted yet.
    pub fn new(settings: &UpstreamSettings, service: UpstreamService) -> Member {
        // Claimed ahead: at least a second's worth at the configured rate, so that
        // a slow claim (a busy disk) does not leave the upstream idle.
        let window = (settings.max_in_flight() * 2)
            .max(settings.rate().ceil() as usize)
            .clamp(2, 512);
        let limits = Limits {
            daily: settings.daily_limit,
            monthly: settings.monthly_limit,
            zone: settings.limits_timezone(),
        };
        Member {
            name: settings.name.clone(),
            service,
            hold: std::sync::atomic::AtomicBool::new(settings.hold),
            policy: Policy {
                retry: RetryPolicy {
                    schedule: settings.retry_schedule(),
                    jitter: 0.2,
                },
                pause_cooldown: settings.pause_cooldown,
                check_after: settings.check_after,
            },
            window,
            rate: settings.rate(),
            max_in_flight: settings.max_in_flight(),
            request_timeout: settings.request_timeout,
            check_interval: settings.check_interval,
            lease: None,
            condition: Mutex::new(Condition {
                paused: None,
                cooling: None,
                failures: 0,
                usage: Usage::new(limits, 0, |_| 0),
                held: HashMap::new(),
                last_error: None,
                last_taken_at: None,
            }),
        }
    }

    /// The member of `settings` with the service its kind calls for.
    pub fn for_upstream(
        settings: &UpstreamSettings,
        store: &Store,
        clock: &Arc<dyn Clock>,
        tasks: &Tasks,
    ) -> Member {
        let (rate, in_flight, timeout) = (
            settings.rate(),
            settings.max_in_flight(),
            settings.request_timeout,
        );
        let service = match settings.kind {
            UpstreamKind::Sandbox => throttled(
                sandbox::Sandbox::new(settings, store.clone(), clock.clone(), tasks.clone()),
                rate,
                in_flight,
                timeout,
            ),
            UpstreamKind::Smsgate => throttled(
                smsgate::client::SmsGateClient::from_settings(settings),
                rate,
                in_flight,
                timeout,
            ),
        };
        let mut member = Member::new(settings, service);
        if store.cluster().is_some() {
            member.lease = Some((store.clone(), upstream_lease(&settings.name)));
        }
        member
    }

    /// Whether the member is on hold: sent nothing.
    pub fn is_held(&self) -> bool {
        self.hold.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Puts the member on hold or releases it; false when it already was so.
    pub fn set_hold(&self, hold: bool) -> bool {
        self.hold.swap(hold, std::sync::atomic::Ordering::Relaxed) != hold
    }

    /// Whether this node may dispatch for the member now: always, unless
    /// another node of the cluster holds its lease.
    pub fn is_ours(&self) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|(store, lease)| store.holds(lease))
    }

    fn condition(&self) -> MutexGuard<'_, Condition> {
        self.condition.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the parts counted in the current day and month from the store.
    pub async fn load_usage(&self, store: &Store, now: i64) -> Result<(), StoreError> {
        let limits = self.condition().usage.limits().clone();
        let mut stored = HashMap::new();
        for kind in [PeriodKind::Day, PeriodKind::Month] {
            let parts = store.usage_parts(&self.name, kind.as_str(), now).await?;
            stored.insert(kind, parts);
        }
        self.condition().usage =
            Usage::new(limits, now, |p| stored.get(&p.kind).copied().unwrap_or(0));
        Ok(())
    }

    /// Why the member takes nothing at `now`, if so.
    pub fn unavailable(&self, now: i64) -> Option<Unavailable> {
        if self.is_held() {
            return Some(Unavailable::Hold);
        }
        if !self.is_ours() {
            return Some(Unavailable::Elsewhere);
        }
        let mut condition = self.condition();
        if let Some((until, reason)) = condition.paused.clone().filter(|(u, _)| *u > now) {
            return Some(Unavailable::Paused { until, reason });
        }
        if let Some((until, reason)) = condition.cooling.clone().filter(|(u, _)| *u > now) {
            return Some(Unavailable::CoolingDown { until, reason });
        }
        condition.usage.exhausted(now).map(Unavailable::OverLimit)
    }

    /// Whether a message of `parts` SMS may go to the member at `now`.
    pub fn can_take(&self, parts: u32, now: i64) -> bool {
        self.unavailable(now).is_none() && self.condition().usage.can_take(parts, now)
    }

    /// Whether a daily or monthly limit is set.
    pub fn has_limits(&self) -> bool {
        let condition = self.condition();
        let limits = condition.usage.limits();
        limits.daily.is_some() || limits.monthly.is_some()
    }

    /// Whether message `outbox_id`, bound to the member by an attempt whose
    /// outcome is unknown, may go to it again now: the parts held for it are
    /// its own, not room another message needs.
    pub fn can_take_again(&self, outbox_id: i64, parts: u32, now: i64) -> bool {
        match self.unavailable(now) {
            None | Some(Unavailable::OverLimit(_)) => {
                let mut condition = self.condition();
                condition.held.contains_key(&outbox_id) || condition.usage.can_take(parts, now)
            }
            Some(_) => false,
        }
    }

    /// Whether the member can take anything now: a message of one part, or a
    /// resend of a message whose parts it holds.
    fn can_take_any(&self, now: i64) -> bool {
        match self.unavailable(now) {
            None => true,
            Some(Unavailable::OverLimit(_)) => !self.condition().held.is_empty(),
            Some(_) => false,
        }
    }

    pub fn is_paused(&self, now: i64) -> bool {
        matches!(self.unavailable(now), Some(Unavailable::Paused { .. }))
    }

    /// Message `outbox_id`, of `parts`, is on its way to the member; false
    /// when its parts were held already (an earlier attempt is unsettled).
    pub fn reserve(&self, outbox_id: i64, parts: u32) -> bool {
        let mut condition = self.condition();
        if condition.held.contains_key(&outbox_id) {
            return false;
        }
        condition.held.insert(outbox_id, parts);
        condition.usage.reserve(parts);
        true
    }

    /// The member did not take message `outbox_id`: its parts are free again.
    pub fn release(&self, outbox_id: i64) {
        let mut condition = self.condition();
        if let Some(parts) = condition.held.remove(&outbox_id) {
            condition.usage.release(parts);
        }
    }

    /// The member took message `outbox_id` (of `parts`) at `now`: what to
    /// store with the outcome. A success also ends a cool-down.
    pub fn commit(&self, outbox_id: i64, parts: u32, now: i64) -> UsageCharge {
        let mut condition = self.condition();
        if let Some(held) = condition.held.remove(&outbox_id) {
            condition.usage.release(held);
        }
        condition.usage.reserve(parts);
        condition.usage.commit(parts, now);
        condition.cooling = None;
        condition.failures = 0;
        condition.last_taken_at = Some(now);
        let periods = condition.usage.periods_at(now).map(|p| UsagePeriod {
            period: p.kind.as_str(),
            starts_at: p.starts_at,
            ends_at: p.ends_at,
        });
        UsageCharge {
            parts,
            periods: periods.to_vec(),
        }
    }

    /// Paused until `until`; returns whether it was not paused before.
    pub fn pause(&self, until: i64, reason: String, now: i64) -> bool {
        let mut condition = self.condition();
        let newly = condition.paused.as_ref().is_none_or(|(u, _)| *u <= now);
        condition.last_error = Some((now, reason.clone()));
        condition.paused = Some((until, reason));
        newly
    }

    /// A retryable failure at `now`: the member takes nothing new for
    /// `retry_after` when the upstream said, else for the next wait of its
    /// retry schedule (`sample` spreads it), which grows with each failure in
    /// a row and starts over once the member takes a message. Returns until when.
    pub fn failed(
        &self,
        now: i64,
        retry_after: Option<Duration>,
        reason: String,
        sample: f64,
    ) -> i64 {
        let mut condition = self.condition();
        condition.last_error = Some((now, reason.clone()));
        let wait =
            retry_after.unwrap_or_else(|| self.policy.retry.delay(condition.failures, sample));
        condition.failures = condition.failures.saturating_add(1);
        let until = now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
        // A later cool-down is kept.
        if condition.cooling.as_ref().is_none_or(|(u, _)| *u < until) {
            condition.cooling = Some((until, reason));
        }
        until
    }

    /// Parts left in the current `kind` period (None: no limit).
    pub fn remaining(&self, kind: PeriodKind, now: i64) -> Option<u64> {
        self.condition().usage.remaining(kind, now)
    }

    /// Its recent life at `now`, for the console.
    pub fn recent(&self, now: i64) -> Recent {
        let mut condition = self.condition();
        let limits = condition.usage.limits().clone();
        let mut used = Vec::new();
        for (kind, limit) in [
            (PeriodKind::Day, limits.daily),
            (PeriodKind::Month, limits.monthly),
        ] {
            if let Some(limit) = limit {
                let left = condition.usage.remaining(kind, now).unwrap_or(0);
                used.push((kind.as_str(), u64::from(limit).saturating_sub(left), limit));
            }
        }
        Recent {
            in_flight: condition.held.len(),
            last_error: condition.last_error.clone(),
            last_taken_at: condition.last_taken_at,
            limits: used,
        }
    }
}

/// Every configured upstream, by name.
#[derive(Default)]
pub struct Members {
    by_name: HashMap<String, Arc<Member>>,
    /// Configuration order, for /readyz and metrics.
    names: Vec<String>,
}

impl Members {
    pub fn new(members: impl IntoIterator<Item = Member>) -> Members {
        let mut all = Members::default();
        for member in members {
            all.names.push(member.name.clone());
            all.by_name.insert(member.name.clone(), Arc::new(member));
        }
        all
    }

    /// The members of `upstreams`, their usage read from the store.
    pub async fn start(
        upstreams: &[UpstreamSettings],
        store: &Store,
        clock: &Arc<dyn Clock>,
        tasks: &Tasks,
    ) -> Result<Members, StoreError> {
        let members = Members::new(
            upstreams
                .iter()
                .map(|u| Member::for_upstream(u, store, clock, tasks)),
        );
        members.load_usage(store, clock.now_ms()).await?;
        Ok(members)
    }

    pub async fn load_usage(&self, store: &Store, now: i64) -> Result<(), StoreError> {
        for member in self.by_name.values() {
            member.load_usage(store, now).await?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Member>> {
        self.by_name.get(name)
    }

    /// Every member in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.names.iter().filter_map(|n| self.by_name.get(n))
    }

    /// The members that can take a message of one part now, or the resend of
    /// one whose parts they hold.
    pub fn reachable(&self, now: i64) -> Vec<String> {
        self.iter()
            .filter(|m| m.can_take_any(now))
            .map(|m| m.name.clone())
            .collect()
    }

    /// Sets the members' gauges: paused, and parts left under each limit.
    pub fn export(&self, metrics: &Metrics, now: i64) {
        for member in self.iter() {
            let labels = Metrics::upstream(&member.name);
            let paused = member.is_paused(now);
            metrics
                .upstream_paused
                .get_or_create(&labels)
                .set(i64::from(paused));
            for kind in [PeriodKind::Day, PeriodKind::Month] {
                if let Some(left) = member.remaining(kind, now) {
                    metrics.limit_remaining(&member.name, kind.as_str(), left);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::dispatch::upstream::{Call, Reply, StatusOutcome};

    const NOON: i64 = 1_796_644_800_000; // 2026-12-07T12:00:00Z

    fn member(extra: &str) -> Member {
        let settings: UpstreamSettings =
            toml::from_str(&format!("name = \"a\"\nkind = \"sandbox\"\n{extra}")).unwrap();
        let never = tower::service_fn(|_: Call| async {
            Ok::<_, Infallible>(Reply::Status(StatusOutcome::NotFound))
        });
        let service = throttled(never, 1.0, 1, Duration::from_secs(1));
        Member::new(&settings, service)
    }

    #[tokio::test]
    async fn a_member_says_why_it_takes_nothing_and_when_it_will_again() {
        let a = member("daily_limit = 3");
        assert_eq!(a.unavailable(NOON), None);
        // The schedule's first wait (5 s ± 20 %; the sample picks the middle).
        assert_eq!(a.failed(NOON, None, "HTTP 503".into(), 0.5), NOON + 5_000);
        assert!(
            matches!(a.unavailable(NOON), Some(Unavailable::CoolingDown { until, .. }) if until == NOON + 5_000)
        );
        // A shorter cool-down does not cut a longer one; the streak goes on.
        a.failed(NOON, Some(Duration::from_secs(1)), "HTTP 429".into(), 0.5);
        assert!(!a.can_take(1, NOON + 4_999));
        let third = a.failed(NOON, None, "HTTP 503".into(), 0.5);
        assert_eq!(
            third,
            NOON + 120_000,
            "the third in a row waits the third step"
        );
        assert!(a.pause(NOON + 60_000, "HTTP 401".into(), NOON));
        assert!(
            !a.pause(NOON + 60_000, "HTTP 401".into(), NOON),
            "already paused"
        );
        assert_eq!(a.unavailable(NOON).map(|u| u.state()), Some("paused"));
        assert!(a.is_paused(NOON + 59_999) && !a.is_paused(NOON + 60_000));

        // After both: the limit. Two parts reserved, then taken.
        let later = NOON + 120_000;
        assert!(a.can_take(3, later) && !a.can_take(4, later));
        assert!(a.reserve(7, 2));
        assert!(!a.reserve(7, 2), "held once per message");
        assert!(a.can_take(1, later) && !a.can_take(2, later));
        let charge = a.commit(7, 2, later);
        assert_eq!(charge.parts, 2);
        assert_eq!(charge.periods[0].period, "day");
        a.reserve(8, 1);
        let over = a.unavailable(later).expect("over the limit");
        assert_eq!(over.state(), "over_limit");
        assert!(over.reason().starts_with("daily_limit 3 reached"), "{over}");
        a.release(8);
        a.release(8);
        assert_eq!(a.remaining(PeriodKind::Day, later), Some(1));
        assert_eq!(a.remaining(PeriodKind::Month, later), None);
        // The next day counts from nothing.
        assert!(a.can_take(3, later + 86_400_000));
        // Taking a message started the failure streak over.
        assert_eq!(a.failed(later, None, "HTTP 503".into(), 0.5), later + 5_000);
    }

    #[tokio::test]
    async fn hold_takes_nothing_and_reachable_lists_the_others() {
        let settings: UpstreamSettings =
            toml::from_str("name = \"b\"\nkind = \"sandbox\"").unwrap();
        let b = Member::new(&settings, member("").service.clone());
        let members = Members::new([member("hold = true"), b]);
        assert_eq!(members.reachable(NOON), ["b"]);
        let a = members.get("a").unwrap();
        assert_eq!(a.unavailable(NOON), Some(Unavailable::Hold));
        assert_eq!(
            members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
