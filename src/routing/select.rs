//! Which member of a route carries a message, chosen when it is sent from the
//! members that can take it then: the pool's, else the fallback's. Within a
//! tier, smooth weighted round robin (each member gets its share, spread out
//! rather than in runs), or with `sticky` a stable hash of the recipient, so
//! each SIM sees a steady set of numbers and only the recipients of a member
//! that drops out move.

use super::Route;

/// One route's choice, with the round robin's state.
#[derive(Debug, Clone)]
pub struct Selector {
    pool: Tier,
    fallback: Tier,
}

#[derive(Debug, Clone)]
struct Tier {
    members: Vec<(String, u32)>,
    /// Smooth weighted round robin: each member's current weight.
    current: Vec<i64>,
    sticky: bool,
}

impl Selector {
    pub fn new(route: &Route) -> Selector {
        Selector {
            pool: Tier::new(route.pool.clone(), route.sticky),
            fallback: Tier::new(
                route
                    .fallback
                    .iter()
                    .map(|name| (name.clone(), 1))
                    .collect(),
                route.sticky,
            ),
        }
    }

    /// The member for a message to `recipient`, among those `can_take`
    /// accepts: from the pool while any pool member can, else from the
    /// fallback; None when no member can.
    pub fn choose(&mut self, recipient: &str, can_take: impl Fn(&str) -> bool) -> Option<&str> {
        let index = match self.pool.choose(recipient, &can_take) {
            Some(i) => return Some(self.pool.members[i].0.as_str()),
            None => self.fallback.choose(recipient, &can_take)?,
        };
        Some(self.fallback.members[index].0.as_str())
    }
}

impl Tier {
    fn new(members: Vec<(String, u32)>, sticky: bool) -> Tier {
        let current = vec![0; members.len()];
        Tier {
            members,
            current,
            sticky,
        }
    }

    fn choose(&mut self, recipient: &str, can_take: &impl Fn(&str) -> bool) -> Option<usize> {
        let eligible: Vec<usize> = (0..self.members.len())
            .filter(|&i| can_take(&self.members[i].0))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        if self.sticky {
            return eligible.into_iter().max_by(|&a, &b| {
                let score =
                    |i: usize| rendezvous_score(recipient, &self.members[i].0, self.members[i].1);
                score(a).total_cmp(&score(b))
            });
        }
        // nginx's smooth weighted round robin over the eligible members.
        let mut total = 0;
        let mut best = eligible[0];
        for &i in &eligible {
            let weight = i64::from(self.members[i].1);
            self.current[i] += weight;
            total += weight;
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        Some(best)
    }
}

/// Weighted rendezvous hashing: the member with the highest score takes the
/// recipient. The score depends only on the pair, so it is the same after a
/// restart and unchanged for other recipients when a member drops out.
fn rendezvous_score(recipient: &str, member: &str, weight: u32) -> f64 {
    let digits = recipient.strip_prefix('+').unwrap_or(recipient);
    let hash = stable_hash(member.as_bytes(), digits.as_bytes());
    // A uniform sample in (0, 1): 53 bits, never 0.
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

/// FNV-1a over both keys, then a SplitMix64 finaliser to spread the bits: fixed
/// across builds and platforms, unlike std's hasher.
fn stable_hash(first: &[u8], second: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in first.iter().chain(&[0xff]).chain(second) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn route(pool: &[(&str, u32)], sticky: bool, fallback: &[&str]) -> Route {
        Route {
            name: "r".into(),
            prefix: String::new(),
            pool: pool.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
            sticky,
            fallback: fallback.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn counts(
        selector: &mut Selector,
        n: usize,
        up: impl Fn(&str) -> bool,
    ) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for i in 0..n {
            let member = selector
                .choose(&format!("+4917{i:07}"), &up)
                .map(str::to_owned);
            *counts.entry(member.unwrap_or_default()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn weights_are_followed_exactly_and_spread_out() {
        let mut selector = Selector::new(&route(&[("a", 2), ("b", 1)], false, &[]));
        let picks: Vec<String> = (0..6)
            .map(|_| selector.choose("+49", |_| true).unwrap().to_owned())
            .collect();
        assert_eq!(picks, ["a", "b", "a", "a", "b", "a"]);
        let counts = counts(&mut selector, 300, |_| true);
        assert_eq!((counts["a"], counts["b"]), (200, 100));
    }

    #[test]
    fn an_unavailable_member_gives_its_share_to_the_others() {
        let mut selector =
            Selector::new(&route(&[("a", 1), ("b", 1), ("c", 2)], false, &["cloud"]));
        let counts = counts(&mut selector, 300, |m| m != "c");
        assert_eq!((counts["a"], counts["b"]), (150, 150));
        assert!(!counts.contains_key("c") && !counts.contains_key("cloud"));
    }

    #[test]
    fn the_fallback_is_used_only_while_no_pool_member_can_take() {
        let mut selector = Selector::new(&route(&[("a", 1), ("b", 1)], false, &["cloud", "spare"]));
        assert_eq!(counts(&mut selector, 10, |m| m != "a").get("b"), Some(&10));
        let counts = counts(&mut selector, 10, |m| m == "cloud" || m == "spare");
        assert_eq!((counts["cloud"], counts["spare"]), (5, 5));
        assert_eq!(selector.choose("+49", |_| false), None);
    }

    #[test]
    fn sticky_keeps_each_recipient_on_one_member_and_moves_only_a_lost_members_share() {
        let mut selector = Selector::new(&route(&[("a", 1), ("b", 1), ("c", 1)], true, &[]));
        let recipients: Vec<String> = (0..300).map(|i| format!("+4917{i:07}")).collect();
        let first: Vec<String> = recipients
            .iter()
            .map(|r| selector.choose(r, |_| true).unwrap().to_owned())
            .collect();
        let again: Vec<String> = recipients
            .iter()
            .map(|r| selector.choose(r, |_| true).unwrap().to_owned())
            .collect();
        assert_eq!(first, again, "the same recipient, the same member");
        for member in ["a", "b", "c"] {
            let share = first.iter().filter(|m| *m == member).count();
            assert!((70..=130).contains(&share), "{member} got {share} of 300");
        }
        // Without b, only b's recipients move.
        for (recipient, before) in recipients.iter().zip(&first) {
            let now = selector.choose(recipient, |m| m != "b").unwrap();
            if before != "b" {
                assert_eq!(now, before, "{recipient} moved although its member is up");
            } else {
                assert_ne!(now, "b");
            }
        }
        // The same recipient with or without "+".
        let bare = selector.choose("4917000001", |_| true).map(str::to_owned);
        let plus = selector.choose("+4917000001", |_| true).map(str::to_owned);
        assert_eq!(bare, plus);
    }

    #[test]
    fn sticky_follows_the_weights() {
        let mut selector = Selector::new(&route(&[("a", 3), ("b", 1)], true, &[]));
        let counts = counts(&mut selector, 4000, |_| true);
        let share = counts["a"] as f64 / 4000.0;
        assert!((0.70..0.80).contains(&share), "a's share {share}");
    }

    #[test]
    fn the_hash_is_fixed() {
        // A changed hash would move every recipient of every sticky route.
        assert_eq!(stable_hash(b"a", b"49"), stable_hash(b"a", b"49"));
        assert_ne!(stable_hash(b"a", b"49"), stable_hash(b"a4", b"9"));
        assert_eq!(
            stable_hash(b"office-a1", b"4917612345678"),
            0xc3f8_4b99_e746_d26f
        );
    }
}
