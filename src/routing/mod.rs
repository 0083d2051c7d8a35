//! Routing, both ways, as domain rules without I/O: which route an outgoing
//! message takes (by account and destination prefix, decided at submit), which
//! member of the route's pool carries it (`select`, decided when it is sent,
//! from the members that can take it then), the carrier limits a member counts
//! against (`limits`), and which account an incoming message belongs to
//! (`incoming`).

pub mod incoming;
pub mod limits;
pub mod select;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AccountSettings, RouteSettings};
pub use incoming::IncomingRoutes;

/// A route as the broker uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// In logs, metrics and the outbox's `route` column.
    pub name: String,
    /// The destination digits it is for; "" for every destination.
    pub prefix: String,
    /// The members and their weights.
    pub pool: Vec<(String, u32)>,
    pub sticky: bool,
    /// The next tier, used while no pool member can take a message.
    pub fallback: Vec<String>,
}

impl Route {
    fn from_settings(r: &RouteSettings) -> Route {
        Route {
            name: r.name.clone(),
            prefix: r.prefix_digits().to_owned(),
            pool: r.weighted_pool(),
            sticky: r.sticky,
            fallback: r.fallback.clone(),
        }
    }

    /// The route an account's `upstream = "x"` stands for: named after the
    /// upstream, every destination, pool `["x"]`.
    pub fn short_form(upstream: &str) -> Route {
        Route {
            name: upstream.to_owned(),
            prefix: String::new(),
            pool: vec![(upstream.to_owned(), 1)],
            sticky: false,
            fallback: Vec::new(),
        }
    }

    /// Every upstream the route may use, pool first.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        (self.pool.iter().map(|(name, _)| name.as_str()))
            .chain(self.fallback.iter().map(String::as_str))
    }
}

/// The routes one account may take: its own first, then those for every
/// account; within each, the longest matching prefix wins.
#[derive(Debug, Clone, Default)]
pub struct AccountRoutes {
    own: Vec<Arc<Route>>,
    general: Vec<Arc<Route>>,
}

impl AccountRoutes {
    /// The routes of an account with `upstream = "x"` and no `[[routes]]`.
    pub fn only(upstream: &str) -> AccountRoutes {
        AccountRoutes {
            own: vec![Arc::new(Route::short_form(upstream))],
            general: Vec::new(),
        }
    }

    /// The route of a message to `dest_addr`, or None when no route takes it.
    pub fn resolve(&self, dest_addr: &str) -> Option<&Arc<Route>> {
        let digits = dest_addr.strip_prefix('+').unwrap_or(dest_addr);
        longest_match(&self.own, digits).or_else(|| longest_match(&self.general, digits))
    }
}

/// The first route whose prefix starts `digits`, of routes sorted longest prefix first.
fn longest_match<'a>(routes: &'a [Arc<Route>], digits: &str) -> Option<&'a Arc<Route>> {
    routes.iter().find(|r| digits.starts_with(&r.prefix))
}

/// Every configured route, and each account's view of them.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    accounts: HashMap<String, AccountRoutes>,
}

impl RouteTable {
    /// Built from validated settings.
    pub fn new(accounts: &[AccountSettings], routes: &[RouteSettings]) -> RouteTable {
        let mut table = RouteTable::default();
        let configured: Vec<(Arc<Route>, &RouteSettings)> = routes
            .iter()
            .map(|r| (Arc::new(Route::from_settings(r)), r))
            .collect();
        table.routes = configured.iter().map(|(r, _)| r.clone()).collect();
        for account in accounts {
            let mut view = AccountRoutes::default();
            if let Some(upstream) = &account.upstream {
                let short = match table.get(upstream) {
                    Some(route) => route.clone(),
                    None => {
                        let route = Arc::new(Route::short_form(upstream));
                        table.routes.push(route.clone());
                        route
                    }
                };
                view.own.push(short);
            }
            for (route, settings) in &configured {
                if settings.accounts.iter().any(|a| a == &account.system_id) {
                    view.own.push(route.clone());
                } else if settings.accounts.is_empty() {
                    view.general.push(route.clone());
                }
            }
            for list in [&mut view.own, &mut view.general] {
                list.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            }
            table.accounts.insert(account.system_id.clone(), view);
        }
        table
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Every route, configured ones first, then the short forms of accounts'
    /// `upstream`.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The routes `system_id` may take (none for an unknown account).
    pub fn for_account(&self, system_id: &str) -> AccountRoutes {
        self.accounts.get(system_id).cloned().unwrap_or_default()
    }

    /// The route of a message from `system_id` to `dest_addr`.
    pub fn resolve(&self, system_id: &str, dest_addr: &str) -> Option<&Arc<Route>> {
        self.accounts.get(system_id)?.resolve(dest_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(system_id: &str, upstream: Option<&str>) -> AccountSettings {
        let upstream = upstream.map_or(String::new(), |u| format!("upstream = {u:?}\n"));
        toml::from_str(&format!("system_id = {system_id:?}\n{upstream}")).expect("an account")
    }

    fn route(text: &str) -> RouteSettings {
        toml::from_str(text).expect("a route")
    }

    fn table() -> RouteTable {
        RouteTable::new(
            &[
                account("shop", None),
                account("bank", Some("cloud")),
                account("news", None),
            ],
            &[
                route("name = \"world\"\nupstreams = [\"a\"]"),
                route("name = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\", \"b\"]"),
                route("name = \"de-mobile\"\nprefix = \"+491\"\nupstreams = [\"b\"]"),
                route("name = \"shop-de\"\nprefix = \"+49\"\naccounts = [\"shop\"]\nupstreams = [\"c\"]"),
                route("name = \"news-us\"\nprefix = \"+1\"\naccounts = [\"news\"]\nupstreams = [\"c\"]"),
            ],
        )
    }

    fn resolved(system_id: &str, dest: &str) -> Option<String> {
        table().resolve(system_id, dest).map(|r| r.name.clone())
    }

    #[test]
    fn the_longest_prefix_wins_and_account_routes_come_first() {
        assert_eq!(resolved("news", "+4930123").as_deref(), Some("de"));
        assert_eq!(resolved("news", "4917612345").as_deref(), Some("de-mobile"));
        assert_eq!(resolved("news", "+33123").as_deref(), Some("world"));
        assert_eq!(resolved("news", "+1555").as_deref(), Some("news-us"));
        // The account's own +49 route beats the general +491 one.
        assert_eq!(resolved("shop", "+4917612345").as_deref(), Some("shop-de"));
        assert_eq!(resolved("shop", "+1555").as_deref(), Some("world"));
        // `upstream = "cloud"` is the account's own route for every destination.
        assert_eq!(resolved("bank", "+4917612345").as_deref(), Some("cloud"));
        assert_eq!(resolved("nobody", "+49").as_deref(), None);
    }

    #[test]
    fn no_matching_route_is_none() {
        let table = RouteTable::new(
            &[account("shop", None)],
            &[route(
                "name = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\"]",
            )],
        );
        assert!(table.resolve("shop", "+33123").is_none());
        assert!(table.resolve("shop", "+49301").is_some());
    }

    #[test]
    fn the_short_form_is_one_route_per_upstream() {
        let table = RouteTable::new(
            &[account("x", Some("phone")), account("y", Some("phone"))],
            &[],
        );
        assert_eq!(table.routes().len(), 1);
        let short = &table.routes()[0];
        assert_eq!(
            (
                short.name.as_str(),
                short.prefix.as_str(),
                short.pool.clone()
            ),
            ("phone", "", vec![("phone".to_owned(), 1)])
        );
        assert_eq!(table.get("phone").map(|r| r.members().count()), Some(1));
    }
}
