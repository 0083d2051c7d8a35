//! Which account an incoming message (MO) belongs to: the same rule whether the
//! message came by webhook or from the upstream's inbox.

use std::collections::HashMap;

use crate::config::AccountSettings;

/// Per upstream, its accounts in configuration order with their receive_numbers.
#[derive(Debug, Clone, Default)]
pub struct IncomingRoutes {
    by_upstream: HashMap<String, Vec<(String, Vec<String>)>>,
}

impl IncomingRoutes {
    pub fn from_accounts(accounts: &[AccountSettings]) -> IncomingRoutes {
        let mut routes = IncomingRoutes::default();
        for account in accounts {
            routes
                .by_upstream
                .entry(account.upstream.clone())
                .or_default()
                .push((account.system_id.clone(), account.receive_numbers.clone()));
        }
        routes
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
}
