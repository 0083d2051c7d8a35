//! `[[routes]]`: which upstreams may carry a message, by destination prefix and
//! account. An account's `upstream = "x"` is the short form of a route for that
//! account alone, every destination, pool `["x"]`.

use std::collections::HashSet;

use serde::Deserialize;

use super::{invalid, AccountSettings, ConfigError};

/// A pool of upstreams for the destinations under `prefix`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    pub name: String,
    /// Destination prefix in E.164 form (`+49`); None matches every destination.
    pub prefix: Option<String>,
    /// Only for these accounts; empty: for every account.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The pool.
    pub upstreams: Vec<String>,
    /// One per pool member; equal when absent.
    pub weights: Option<Vec<u32>>,
    /// A recipient keeps going to the same member while it is available.
    #[serde(default)]
    pub sticky: bool,
    /// Used only while no pool member is available.
    #[serde(default)]
    pub fallback: Vec<String>,
}

impl RouteSettings {
    /// The prefix's digits ("" for every destination).
    pub fn prefix_digits(&self) -> &str {
        self.prefix
            .as_deref()
            .map_or("", |p| p.strip_prefix('+').unwrap_or(p))
    }

    /// The pool with each member's weight.
    pub fn weighted_pool(&self) -> Vec<(String, u32)> {
        let weight = |i: usize| self.weights.as_ref().map_or(1, |w| w[i]);
        (self.upstreams.iter().enumerate())
            .map(|(i, name)| (name.clone(), weight(i)))
            .collect()
    }

    /// Whether the route is for `system_id`.
    pub fn applies_to(&self, system_id: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|a| a == system_id)
    }

    fn validate(
        &self,
        i: usize,
        upstreams: &HashSet<&str>,
        accounts: &[AccountSettings],
    ) -> Result<(), ConfigError> {
        let key = |field: &str| format!("routes[{i}].{field}");
        if self.name.is_empty() || self.name.chars().any(|c| c.is_control()) {
            return Err(invalid(key("name"), "must be a non-empty name"));
        }
        if upstreams.contains(self.name.as_str()) {
            return Err(invalid(
                key("name"),
                format!(
                    "{:?} is an upstream's name, which names the route of accounts with \
                     `upstream = {:?}`; choose another",
                    self.name, self.name
                ),
            ));
        }
        if let Some(prefix) = &self.prefix {
            let digits = prefix.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid(
                    key("prefix"),
                    format!("{prefix:?} is not a prefix in E.164 form (\"+\" and 1 to 15 digits)"),
                ));
            }
        }
        for (j, account) in self.accounts.iter().enumerate() {
            if !accounts.iter().any(|a| &a.system_id == account) {
                return Err(invalid(
                    key(&format!("accounts[{j}]")),
                    format!("no account with system_id {account:?}"),
                ));
            }
        }
        if self.upstreams.is_empty() {
            return Err(invalid(key("upstreams"), "must name at least one upstream"));
        }
        let mut members = HashSet::new();
        let named = self.upstreams.iter().map(|u| ("upstreams", u));
        let fallback = self.fallback.iter().map(|u| ("fallback", u));
        let mut positions = std::collections::HashMap::<&str, usize>::new();
        for (list, name) in named.chain(fallback) {
            let j = positions.entry(list).or_insert(0);
            let at = key(&format!("{list}[{j}]"));
            *j += 1;
            if !upstreams.contains(name.as_str()) {
                return Err(invalid(at, format!("no upstream named {name:?}")));
            }
            if !members.insert(name.as_str()) {
                return Err(invalid(at, format!("{name:?} is named twice in the route")));
            }
        }
        if let Some(weights) = &self.weights {
            if weights.len() != self.upstreams.len() {
                return Err(invalid(
                    key("weights"),
                    format!(
                        "has {} entries for {} upstreams; give one weight per upstream",
                        weights.len(),
                        self.upstreams.len()
                    ),
                ));
            }
            if let Some(j) = weights.iter().position(|&w| w == 0 || w > 1000) {
                return Err(invalid(
                    key(&format!("weights[{j}]")),
                    "must be between 1 and 1000",
                ));
            }
        }
        Ok(())
    }
}

/// Checks every route, then that no two routes compete for the same account
/// and prefix, and that every account has a way out.
pub(super) fn validate_all(
    routes: &[RouteSettings],
    upstreams: &HashSet<&str>,
    accounts: &[AccountSettings],
) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    // (account or "" for every account, prefix digits)
    let mut scopes: Vec<(&str, &str, usize)> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        route.validate(i, upstreams, accounts)?;
        if !names.insert(route.name.as_str()) {
            return Err(invalid(
                format!("routes[{i}].name"),
                format!("duplicate route name {:?}", route.name),
            ));
        }
        let scope_accounts: Vec<&str> = if route.accounts.is_empty() {
            vec![""]
        } else {
            route.accounts.iter().map(String::as_str).collect()
        };
        for account in scope_accounts {
            let prefix = route.prefix_digits();
            if let Some((_, _, earlier)) = scopes
                .iter()
                .find(|(a, p, _)| *a == account && *p == prefix)
            {
                let whom = if account.is_empty() {
                    "every account".to_owned()
                } else {
                    format!("account {account:?}")
                };
                return Err(invalid(
                    format!("routes[{i}]"),
                    format!(
                        "routes[{earlier}] already routes {} for {whom}; one route per prefix and account",
                        route.prefix.as_deref().unwrap_or("every destination"),
                    ),
                ));
            }
            scopes.push((account, prefix, i));
        }
    }
    for (i, account) in accounts.iter().enumerate() {
        if let Some(upstream) = &account.upstream {
            let own = routes.iter().position(|r| {
                r.prefix.is_none() && r.accounts.iter().any(|a| a == &account.system_id)
            });
            if let Some(r) = own {
                return Err(invalid(
                    format!("accounts[{i}].upstream"),
                    format!(
                        "routes[{r}] is already this account's route for every destination; \
                         remove `upstream = {upstream:?}` or that route's accounts entry"
                    ),
                ));
            }
        } else if !routes.iter().any(|r| r.applies_to(&account.system_id)) {
            return Err(invalid(
                format!("accounts[{i}]"),
                format!(
                    "account {:?} has no route: set `upstream` or add a [[routes]] entry \
                     that applies to it",
                    account.system_id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{parse, BASE};

    const PHONES: &str = "[[upstreams]]\nname = \"a\"\nkind = \"sandbox\"\n\
        [[upstreams]]\nname = \"b\"\nkind = \"sandbox\"\n\
        [[upstreams]]\nname = \"cloud\"\nkind = \"sandbox\"\n";

    fn error(routes: &str) -> String {
        parse(&format!("{PHONES}{routes}\n{BASE}"))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_complete_route_is_read() {
        let settings = parse(&format!(
            "{PHONES}[[routes]]\nname = \"de\"\nprefix = \"+49\"\naccounts = [\"demo\"]\n\
             upstreams = [\"a\", \"b\"]\nweights = [2, 1]\nsticky = true\nfallback = [\"cloud\"]\n{BASE}"
        ))
        .expect("valid");
        let route = &settings.routes[0];
        assert_eq!(route.prefix_digits(), "49");
        assert_eq!(
            route.weighted_pool(),
            [("a".to_owned(), 2), ("b".to_owned(), 1)]
        );
        assert!(route.sticky && route.applies_to("demo") && !route.applies_to("other"));
    }

    #[test]
    fn bad_routes_name_their_key() {
        let route = |body: &str| format!("[[routes]]\nname = \"de\"\n{body}");
        let cases = [
            (
                route("upstreams = [\"a\", \"nope\"]"),
                "routes[0].upstreams[1]: no upstream named \"nope\"",
            ),
            (
                route("upstreams = [\"a\"]\nfallback = [\"a\"]"),
                "routes[0].fallback[0]: \"a\" is named twice in the route",
            ),
            (
                route("upstreams = [\"a\"]\nfallback = [\"gone\"]"),
                "routes[0].fallback[0]: no upstream named \"gone\"",
            ),
            (
                route("upstreams = []"),
                "routes[0].upstreams: must name at least one upstream",
            ),
            (
                route("upstreams = [\"a\", \"b\"]\nweights = [1]"),
                "routes[0].weights: has 1 entries for 2 upstreams; give one weight per upstream",
            ),
            (
                route("upstreams = [\"a\", \"b\"]\nweights = [1, 0]"),
                "routes[0].weights[1]: must be between 1 and 1000",
            ),
            (
                route("prefix = \"49\"\nupstreams = [\"a\"]"),
                "routes[0].prefix: \"49\" is not a prefix in E.164 form (\"+\" and 1 to 15 digits)",
            ),
            (
                route("upstreams = [\"a\"]\naccounts = [\"shop\"]"),
                "routes[0].accounts[0]: no account with system_id \"shop\"",
            ),
            (
                "[[routes]]\nname = \"a\"\nupstreams = [\"b\"]".to_owned(),
                "routes[0].name: \"a\" is an upstream's name, which names the route of \
                 accounts with `upstream = \"a\"`; choose another",
            ),
            (
                format!(
                    "{}\n{}",
                    route("prefix = \"+49\"\nupstreams = [\"a\"]"),
                    "[[routes]]\nname = \"de2\"\nprefix = \"+49\"\nupstreams = [\"b\"]"
                ),
                "routes[1]: routes[0] already routes +49 for every account; one route per \
                 prefix and account",
            ),
            (
                format!(
                    "{}\n{}",
                    route("upstreams = [\"a\"]"),
                    "[[routes]]\nname = \"de\"\nprefix = \"+1\"\nupstreams = [\"b\"]"
                ),
                "routes[1].name: duplicate route name \"de\"",
            ),
        ];
        for (routes, expected) in cases {
            assert_eq!(error(&routes), format!("test.toml: {expected}"), "{routes}");
        }
    }

    #[test]
    fn an_account_needs_an_upstream_or_a_route() {
        let base_without_upstream = BASE.replace("upstream = \"sandbox\"\n", "");
        let err = parse(&format!("{PHONES}{base_without_upstream}")).expect_err("no route");
        assert_eq!(
            err.to_string(),
            "test.toml: accounts[0]: account \"demo\" has no route: set `upstream` or add a \
             [[routes]] entry that applies to it"
        );
        let routed = format!(
            "{PHONES}[[routes]]\nname = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\"]\n\
             {base_without_upstream}"
        );
        let settings = parse(&routed).expect("a general route is a way out");
        assert_eq!(settings.accounts[0].upstream, None);
    }

    #[test]
    fn an_account_route_for_every_destination_and_upstream_would_compete() {
        let err = error("[[routes]]\nname = \"own\"\naccounts = [\"demo\"]\nupstreams = [\"a\"]");
        assert!(
            err.starts_with("test.toml: accounts[0].upstream: routes[0] is already"),
            "{err}"
        );
    }
}
