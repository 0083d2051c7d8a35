//! Which account an incoming message (MO) belongs to: the same rule whether the
//! message came by webhook or from the upstream's inbox.

use std::collections::HashMap;

use crate::config::{AccountSettings, RouteSettings};

/// Per upstream, the accounts that send through it (by `upstream` or by a
/// route naming it) in configuration order, with their receive_numbers.
#[derive(Debug, Clone, Default)]
pub struct IncomingRoutes {
    by_upstream: HashMap<String, Vec<(String, Vec<String>)>>,
}

impl IncomingRoutes {
    pub fn from_accounts(accounts: &[AccountSettings]) -> IncomingRoutes {
        IncomingRoutes::new(accounts, &[])
    }

    pub fn new(accounts: &[AccountSettings], routes: &[RouteSettings]) -> IncomingRoutes {
        let mut by_upstream: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
        for account in accounts {
            let id = account.system_id.as_str();
            let own = |r: &&RouteSettings| r.accounts.iter().any(|a| a == id);
            // An own route for every destination (or `upstream`) is tried
            // before any general route, so those carry nothing of its.
            let general_shadowed =
                account.upstream.is_some() || routes.iter().filter(own).any(|r| r.prefix.is_none());
            let by_route = routes
                .iter()
                .filter(|r| own(r) || (r.accounts.is_empty() && !general_shadowed))
                .flat_map(|r| r.upstreams.iter().chain(&r.fallback));
            for upstream in account.upstream.iter().chain(by_route) {
                let users = by_upstream.entry(upstream.clone()).or_default();
                if !users.iter().any(|(id, _)| id == &account.system_id) {
                    users.push((account.system_id.clone(), account.receive_numbers.clone()));
                }
            }
        }
        IncomingRoutes { by_upstream }
    }

    /// The account an incoming message to `recipient` through `upstream` belongs
    /// to: the one listing the number (with or without `+`), else the upstream's
    /// first account; None when no account uses the upstream.
    pub fn route(&self, upstream: &str, recipient: Option<&str>) -> Option<&str> {
        let accounts = self.by_upstream.get(upstream)?;
        let digits = |n: &str| n.trim_start_matches('+').to_owned();
        recipient
            .and_then(|to| {
                accounts
                    .iter()
                    .find(|(_, numbers)| numbers.iter().any(|n| digits(n) == digits(to)))
            })
            .or_else(|| accounts.first())
            .map(|(system_id, _)| system_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(system_id: &str, upstream: &str, receive_numbers: &[&str]) -> AccountSettings {
        let numbers: Vec<String> = receive_numbers.iter().map(|n| format!("{n:?}")).collect();
        toml::from_str(&format!(
            "system_id = {system_id:?}\nupstream = {upstream:?}\nreceive_numbers = [{}]",
            numbers.join(", ")
        ))
        .expect("an account")
    }

    #[test]
    fn incoming_messages_go_by_receiving_number_else_to_the_first_account() {
        let routes = IncomingRoutes::from_accounts(&[
            account("first", "phone", &[]),
            account("elsewhere", "other-phone", &["+4915100000"]),
            account("shop", "phone", &["+4915100000"]),
        ]);
        assert_eq!(routes.route("phone", Some("4915100000")), Some("shop"));
        assert_eq!(routes.route("phone", Some("+4915100000")), Some("shop"));
        assert_eq!(routes.route("phone", Some("+4930000000")), Some("first"));
        assert_eq!(routes.route("phone", None), Some("first"));
        assert_eq!(routes.route("other", None), None);
        assert_eq!(
            routes.route("other-phone", Some("+4930000000")),
            Some("elsewhere")
        );
    }

    #[test]
    fn accounts_reach_the_upstreams_of_their_routes() {
        let route: RouteSettings = toml::from_str(
            "name = \"r\"\nprefix = \"+49\"\naccounts = [\"shop\"]\nupstreams = [\"phone-b\"]\nfallback = [\"cloud\"]",
        )
        .expect("a route");
        let general: RouteSettings =
            toml::from_str("name = \"g\"\nupstreams = [\"phone-c\"]").expect("a route");
        let mut shop = account("shop", "phone-a", &["+4915100000"]);
        shop.upstream = None;
        let routes =
            IncomingRoutes::new(&[account("first", "phone-a", &[]), shop], &[route, general]);
        assert_eq!(routes.route("phone-b", None), Some("shop"));
        assert_eq!(routes.route("cloud", Some("+4930000000")), Some("shop"));
        // first's `upstream` takes all its messages; the general route is shop's.
        assert_eq!(routes.route("phone-c", None), Some("shop"));
        assert_eq!(routes.route("phone-a", Some("4915100000")), Some("first"));
    }

    #[test]
    fn a_general_route_an_account_never_takes_brings_it_nothing() {
        // bank's own upstream takes every destination of bank's: the general
        // route's phone never carries bank's messages, so its MO is shop's.
        let general: RouteSettings =
            toml::from_str("name = \"world\"\nupstreams = [\"a\"]").expect("a route");
        let mut shop = account("shop", "unused", &[]);
        shop.upstream = None;
        let routes = IncomingRoutes::new(&[account("bank", "cloud", &[]), shop], &[general]);
        assert_eq!(routes.route("a", None), Some("shop"));
        assert_eq!(routes.route("cloud", None), Some("bank"));
    }
}
