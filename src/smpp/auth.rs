//! Bind credentials: the accounts of the config, checked against a plain password
//! (development) or an argon2 hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::pdu::{BindKind, CommandStatus};
use super::throttle::TokenBucket;
use crate::config::{AccountSettings, BindType, Secret};

enum Credential {
    Plain(Secret),
    Argon2(Secret),
}

/// One ESME account as the SMPP side uses it.
pub struct Account {
    pub system_id: String,
    /// The same id, shared cheaply with every request the account makes.
    pub shared_id: Arc<str>,
    pub upstream: String,
    pub max_sessions: usize,
    /// How its receivers get incoming messages too long for one SMS.
    pub long_incoming: crate::smpp::incoming::LongIncoming,
    bind_kinds: Vec<BindKind>,
    credential: Credential,
    /// Shared by every session of the account: the throughput limit is per account.
    throughput: Mutex<TokenBucket>,
}

impl Account {
    pub fn allows(&self, kind: BindKind) -> bool {
        self.bind_kinds.contains(&kind)
    }

    /// Takes `cost` submits from the account's budget for this second.
    pub fn try_take_throughput(&self, cost: u32) -> bool {
        match self.throughput.lock() {
            Ok(mut bucket) => bucket.try_take(cost),
            Err(poisoned) => poisoned.into_inner().try_take(cost),
        }
    }
}

pub fn bind_kind(bind_type: BindType) -> BindKind {
    match bind_type {
        BindType::Transmitter => BindKind::Transmitter,
        BindType::Receiver => BindKind::Receiver,
        BindType::Transceiver => BindKind::Transceiver,
    }
}

/// Why a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    UnknownSystemId,
    WrongPassword,
    BindTypeNotAllowed,
    TooManySessions,
}

impl BindRefusal {
    /// The bind_*_resp status. Unless the operator asks for detailed errors, every
    /// credential failure is ESME_RBINDFAIL so that probing cannot tell which
    /// system_ids exist.
    pub fn status(self, detailed: bool) -> CommandStatus {
        match (self, detailed) {
            (BindRefusal::UnknownSystemId, true) => CommandStatus::ESME_RINVSYSID,
            (BindRefusal::WrongPassword, true) => CommandStatus::ESME_RINVPASWD,
            _ => CommandStatus::ESME_RBINDFAIL,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            BindRefusal::UnknownSystemId => "unknown system_id",
            BindRefusal::WrongPassword => "wrong password",
            BindRefusal::BindTypeNotAllowed => "bind type not allowed for this account",
            BindRefusal::TooManySessions => "account already has max_sessions bound",
        }
    }
}

pub struct Accounts {
    by_system_id: HashMap<String, Arc<Account>>,
}

impl Accounts {
    pub fn from_settings(accounts: &[AccountSettings]) -> Accounts {
        let by_system_id = accounts
            .iter()
            .map(|a| {
                let credential = match (&a.password_hash, &a.password) {
                    (Some(hash), _) => Credential::Argon2(hash.clone()),
                    (None, Some(plain)) => Credential::Plain(plain.clone()),
                    // Config validation guarantees one of the two; an empty secret matches nothing.
                    (None, None) => Credential::Argon2(Secret::new("")),
                };
                let account = Account {
                    system_id: a.system_id.clone(),
                    shared_id: Arc::from(a.system_id.as_str()),
                    upstream: a.upstream.clone(),
                    max_sessions: a.max_sessions,
                    long_incoming: a.long_incoming,
                    bind_kinds: a.bind_types.iter().copied().map(bind_kind).collect(),
                    credential,
                    throughput: Mutex::new(TokenBucket::new(a.throughput)),
                };
                (a.system_id.clone(), Arc::new(account))
            })
            .collect();
        Accounts { by_system_id }
    }

    pub fn get(&self, system_id: &str) -> Option<&Arc<Account>> {
        self.by_system_id.get(system_id)
    }

    /// System ids of accounts configured with a plain password, for the startup warning.
    pub fn with_plain_passwords(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .by_system_id
            .values()
            .filter(|a| matches!(a.credential, Credential::Plain(_)))
            .map(|a| a.system_id.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Checks system_id, password and bind type. argon2 runs on the blocking pool so
    /// that a burst of binds does not stall the sessions sharing this worker thread.
    pub async fn authenticate(
        &self,
        system_id: &str,
        password: &str,
        kind: BindKind,
    ) -> Result<Arc<Account>, BindRefusal> {
        let account = self.get(system_id).ok_or(BindRefusal::UnknownSystemId)?;
        let password_ok = match &account.credential {
            Credential::Plain(expected) => constant_time_eq(expected.expose(), password),
            Credential::Argon2(hash) => {
                let hash = hash.expose().to_owned();
                let password = password.to_owned();
                tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                    .await
                    .unwrap_or(false)
            }
        };
        if !password_ok {
            return Err(BindRefusal::WrongPassword);
        }
        if !account.allows(kind) {
            return Err(BindRefusal::BindTypeNotAllowed);
        }
        Ok(Arc::clone(account))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn verify_password(phc_hash: &str, password: &str) -> bool {
    PasswordHash::new(phc_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// An argon2id PHC string for `[[accounts]] password_hash`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(system_id: &str, password: Option<&str>, hash: Option<String>) -> AccountSettings {
        AccountSettings {
            system_id: system_id.into(),
            password: password.map(Secret::new),
            password_hash: hash.map(Secret::new),
            upstream: "sandbox".into(),
            bind_types: vec![BindType::Transmitter, BindType::Transceiver],
            max_sessions: 2,
            throughput: 10.0,
            max_queued: 100,
            max_undelivered: 100,
            receive_numbers: Vec::new(),
            default_alphabet: Default::default(),
            long_incoming: Default::default(),
        }
    }

    #[tokio::test]
    async fn plain_and_hashed_passwords() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let accounts = Accounts::from_settings(&[
            account("plain", Some("pw"), None),
            account("hashed", None, Some(hash)),
        ]);
        let tx = BindKind::Transmitter;
        assert!(accounts.authenticate("plain", "pw", tx).await.is_ok());
        assert!(accounts.authenticate("hashed", "s3cret", tx).await.is_ok());
        assert_eq!(
            accounts.authenticate("plain", "px", tx).await.err(),
            Some(BindRefusal::WrongPassword)
        );
        assert_eq!(
            accounts.authenticate("hashed", "s3cre", tx).await.err(),
            Some(BindRefusal::WrongPassword)
        );
        assert_eq!(
            accounts.authenticate("nobody", "pw", tx).await.err(),
            Some(BindRefusal::UnknownSystemId)
        );
        assert_eq!(
            accounts
                .authenticate("plain", "pw", BindKind::Receiver)
                .await
                .err(),
            Some(BindRefusal::BindTypeNotAllowed)
        );
        assert_eq!(accounts.with_plain_passwords(), vec!["plain"]);
    }

    #[test]
    fn refusal_statuses_hide_existence_unless_detailed() {
        assert_eq!(
            BindRefusal::WrongPassword.status(false),
            CommandStatus::ESME_RBINDFAIL
        );
        assert_eq!(
            BindRefusal::UnknownSystemId.status(false),
            CommandStatus::ESME_RBINDFAIL
        );
        assert_eq!(
            BindRefusal::WrongPassword.status(true),
            CommandStatus::ESME_RINVPASWD
        );
        assert_eq!(
            BindRefusal::UnknownSystemId.status(true),
            CommandStatus::ESME_RINVSYSID
        );
        assert_eq!(
            BindRefusal::TooManySessions.status(true),
            CommandStatus::ESME_RBINDFAIL
        );
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        assert!(!verify_password("not-a-phc-string", "pw"));
    }
}
