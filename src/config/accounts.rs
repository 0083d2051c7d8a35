//! `[[accounts]]`: the ESMEs that may bind, their passwords and limits.

use std::collections::HashSet;

use serde::Deserialize;

use super::smpp::system_id_problem;
use super::{invalid, ConfigError, Secret};
use crate::smpp::pdu::BindKind;
use crate::text::{DefaultAlphabet, LongIncoming};

/// SMPP v3.4 password is a C-Octet String of at most 9 octets incl. NUL.
const MAX_PASSWORD_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    pub system_id: String,
    /// Plain password, for development.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Argon2 PHC string, as printed by `smpp-broker hash-password`.
    #[serde(default)]
    pub password_hash: Option<Secret>,
    /// Name of an `[[upstreams]]` entry: the account's route for every
    /// destination not matched by one of its `[[routes]]`.
    pub upstream: Option<String>,
    #[serde(default = "default_bind_types")]
    pub bind_types: Vec<BindKind>,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Submits per second (token bucket rate).
    #[serde(default = "default_throughput")]
    pub throughput: f64,
    /// Messages waiting to be handed upstream; above it, ESME_RMSGQFUL.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Receipts and incoming messages kept for the account's receivers at most;
    /// beyond it the oldest are dropped (logged).
    #[serde(default = "default_max_undelivered")]
    pub max_undelivered: usize,
    /// Incoming messages to these numbers (of the account's upstream) come to
    /// this account. Without a match they go to the first account of the upstream.
    #[serde(default)]
    pub receive_numbers: Vec<String>,
    /// How data_coding 0 is read: "gsm7" (GSM 03.38) or "latin1".
    #[serde(default)]
    pub default_alphabet: DefaultAlphabet,
    /// How an incoming message too long for one SMS goes out: "udh" (segments)
    /// or "message_payload" (whole, in the TLV).
    #[serde(default)]
    pub long_incoming: LongIncoming,
}

fn default_max_queued() -> usize {
    100_000
}

/// Receipts and incoming messages an account keeps when it names no limit.
pub const DEFAULT_MAX_UNDELIVERED: usize = 25_000;

fn default_max_undelivered() -> usize {
    DEFAULT_MAX_UNDELIVERED
}

fn default_bind_types() -> Vec<BindKind> {
    BindKind::ALL.to_vec()
}

fn default_max_sessions() -> usize {
    4
}

fn default_throughput() -> f64 {
    100.0
}

impl AccountSettings {
    /// Whether this account may bind as `bind`.
    pub fn allows(&self, bind: BindKind) -> bool {
        self.bind_types.contains(&bind)
    }
}

/// Checks every account, in order: its own keys, then that its system_id is
/// not taken by an earlier one. `upstreams` are the configured upstream names.
pub(super) fn validate_all(
    accounts: &[AccountSettings],
    upstreams: &HashSet<&str>,
) -> Result<(), ConfigError> {
    let mut system_ids = HashSet::new();
    for (i, account) in accounts.iter().enumerate() {
        account.validate(i, upstreams)?;
        if !system_ids.insert(account.system_id.as_str()) {
            return Err(invalid(
                format!("accounts[{i}].system_id"),
                format!("duplicate system_id {:?}", account.system_id),
            ));
        }
    }
    Ok(())
}

impl AccountSettings {
    fn validate(&self, index: usize, upstreams: &HashSet<&str>) -> Result<(), ConfigError> {
        let key = |field: &str| format!("accounts[{index}].{field}");
        if let Some(message) = system_id_problem(&self.system_id) {
            return Err(invalid(key("system_id"), message));
        }
        match (&self.password, &self.password_hash) {
            (Some(password), None) => {
                let password = password.expose();
                if password.is_empty() {
                    return Err(invalid(key("password"), "must not be empty"));
                }
                // Counted in bytes: that is what the PDU field limits.
                if password.len() > MAX_PASSWORD_LEN {
                    return Err(invalid(
                        key("password"),
                        "longer than 8 characters (SMPP passwords are at most 8)",
                    ));
                }
                if password.contains('\0') {
                    return Err(invalid(key("password"), "must not contain NUL"));
                }
            }
            (None, Some(hash)) => {
                // The message never includes the hash itself.
                let parsed = argon2::PasswordHash::new(hash.expose()).map_err(|err| {
                    invalid(
                        key("password_hash"),
                        format!("not a valid PHC hash string ({err}); make one with `smpp-broker hash-password`"),
                    )
                })?;
                if argon2::Algorithm::try_from(parsed.algorithm).is_err() {
                    return Err(invalid(
                        key("password_hash"),
                        format!(
                            "algorithm {} is not argon2 (argon2id, argon2i or argon2d)",
                            parsed.algorithm
                        ),
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    format!("accounts[{index}]"),
                    "set exactly one of password or password_hash",
                ))
            }
        }
        if let Some(upstream) = &self.upstream {
            if !upstreams.contains(upstream.as_str()) {
                return Err(invalid(
                    key("upstream"),
                    format!("no upstream named {upstream:?}"),
                ));
            }
        }
        if self.bind_types.is_empty() {
            return Err(invalid(
                key("bind_types"),
                "must list at least one of transmitter, receiver, transceiver",
            ));
        }
        if self.max_sessions == 0 {
            return Err(invalid(key("max_sessions"), "must be at least 1"));
        }
        if !(self.throughput.is_finite() && self.throughput > 0.0) {
            return Err(invalid(
                key("throughput"),
                format!("must be a finite number above 0, got {}", self.throughput),
            ));
        }
        if self.max_queued == 0 {
            return Err(invalid(key("max_queued"), "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{account_with, argon2_hash, error, parse, BASE};
    use crate::config::Secret;
    use crate::smpp::pdu::BindKind;

    #[test]
    fn password_errors() {
        assert_eq!(
            error(&BASE.replace("demo1234", "demo12345")),
            "test.toml: accounts[0].password: longer than 8 characters (SMPP passwords are at most 8)"
        );
        assert_eq!(
            error(&BASE.replace("demo1234", "")),
            "test.toml: accounts[0].password: must not be empty"
        );
        assert_eq!(
            error(&account_with(&format!(
                "password_hash = {:?}",
                argon2_hash("x")
            ))),
            "test.toml: accounts[0]: set exactly one of password or password_hash"
        );
        assert_eq!(
            error(&BASE.replace("password = \"demo1234\"", "")),
            "test.toml: accounts[0]: set exactly one of password or password_hash"
        );
    }

    #[test]
    fn valid_argon2_hash_is_accepted() {
        let hash = argon2_hash("s3cret");
        let text = BASE.replace(
            "password = \"demo1234\"",
            &format!("password_hash = {hash:?}"),
        );
        let s = parse(&text).expect("valid hash");
        let account = s.account("demo").expect("account");
        assert!(account.password.is_none());
        assert_eq!(
            account.password_hash.as_ref().map(Secret::expose),
            Some(hash.as_str())
        );
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        for bad in [
            "not-a-hash",
            "$argon2id$v=19$m=19456,t=2,p=1$bad salt$",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ] {
            let text = BASE.replace(
                "password = \"demo1234\"",
                &format!("password_hash = {bad:?}"),
            );
            let msg = error(&text);
            assert!(
                msg.starts_with("test.toml: accounts[0].password_hash: "),
                "{msg}"
            );
            assert!(!msg.contains(bad), "hash echoed: {msg}");
        }
    }

    #[test]
    fn account_errors_name_their_key() {
        let two = format!(
            "{BASE}\n[[accounts]]\nsystem_id = \"other\"\npassword = \"pw\"\nupstream = \"x\"\n"
        );
        assert_eq!(
            error(&two),
            "test.toml: accounts[1].upstream: no upstream named \"x\""
        );

        let dup = format!("{BASE}\n[[accounts]]\nsystem_id = \"demo\"\npassword = \"pw\"\nupstream = \"sandbox\"\n");
        assert_eq!(
            error(&dup),
            "test.toml: accounts[1].system_id: duplicate system_id \"demo\""
        );

        let msg = error(&BASE.replace("\"demo\"", "\"a-very-long-system-id\""));
        assert!(
            msg.starts_with("test.toml: accounts[0].system_id: ") && msg.contains("longer than 15"),
            "{msg}"
        );
        let msg = error(&BASE.replace("\"demo\"", "\"\""));
        assert_eq!(msg, "test.toml: accounts[0].system_id: must not be empty");
        let msg = error(&BASE.replace("\"demo\"", "\"d\u{e9}mo\""));
        assert!(
            msg.starts_with("test.toml: accounts[0].system_id: ")
                && msg.contains("printable ASCII"),
            "{msg}"
        );

        assert_eq!(
            error(&account_with("bind_types = []")),
            "test.toml: accounts[0].bind_types: must list at least one of transmitter, receiver, transceiver"
        );
        assert_eq!(
            error(&account_with("max_sessions = 0")),
            "test.toml: accounts[0].max_sessions: must be at least 1"
        );
        for bad in ["0.0", "-1.0", "nan", "inf"] {
            let msg = error(&account_with(&format!("throughput = {bad}")));
            assert!(
                msg.starts_with(
                    "test.toml: accounts[0].throughput: must be a finite number above 0"
                ),
                "{msg}"
            );
        }
    }

    #[test]
    fn account_lookup_is_exact() {
        let settings = parse(BASE).expect("base");
        assert!(settings.account("demo").is_some());
        assert!(settings.account("DEMO").is_none());
        assert!(settings.account("nobody").is_none());
        assert_eq!(BindKind::Transceiver.name(), "transceiver");
    }

    #[test]
    fn bind_types_are_spelled_as_the_bind_kind_names() {
        for kind in BindKind::ALL {
            let text = account_with(&format!("bind_types = [{:?}]", kind.name()));
            let settings = parse(&text).expect("valid");
            assert_eq!(settings.accounts[0].bind_types, [kind]);
        }
    }
}
