//! Bind credentials: the accounts of the config, checked against a plain password
//! (development) or an argon2 hash.
//!
//! Two protections live here. argon2 needs its memory cost (19 MiB with the
//! defaults) for each verification, so at most one per core runs at once, in
//! working memory that is reused (src/smpp/auth/verifier.rs), and parallel binds
//! queue instead of exhausting memory. And when any account has a
//! `password_hash`, every bind costs exactly one verification: an unknown system_id
//! or a plain-password account is checked against a decoy hash with the same
//! parameters, so the answer's timing does not tell which system_ids exist.

mod verifier;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;

use super::pdu::{BindKind, CommandStatus};
use super::throttle::TokenBucket;
use crate::config::{AccountSettings, Secret};
use verifier::Verifier;
pub use verifier::{verify_with, VerificationStats};

enum Credential {
    Plain(Secret),
    Argon2(Secret),
}

/// One ESME account as the SMPP side uses it.
pub struct Account {
    pub system_id: String,
    /// The same id, shared cheaply with every request the account makes.
    pub shared_id: Arc<str>,
    pub max_sessions: usize,
    /// How its receivers get incoming messages too long for one SMS.
    pub long_incoming: crate::text::LongIncoming,
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

/// Why a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    UnknownSystemId,
    WrongPassword,
    BindTypeNotAllowed,
    TooManySessions,
    /// The shared database could not count the account's sessions.
    SessionsUncounted,
    /// A reload changed the account during the bind.
    AccountChanged,
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
            BindRefusal::SessionsUncounted => {
                "the account's sessions on the other nodes could not be counted"
            }
            BindRefusal::AccountChanged => "the account was reloaded during the bind",
        }
    }
}

pub struct Accounts {
    /// Each account as configured, and as its sessions use it; a reload
    /// replaces the map (`update`).
    by_system_id: RwLock<HashMap<String, (AccountSettings, Arc<Account>)>>,
    verifier: Verifier,
}

/// What a bound session took from its account's settings at the bind: when
/// one of these changes, the session binds again to use the new value.
fn bind_terms(a: &AccountSettings) -> impl PartialEq + '_ {
    (
        (
            a.password.as_ref().map(Secret::expose),
            a.password_hash.as_ref().map(Secret::expose),
        ),
        &a.bind_types,
        a.max_sessions,
        a.throughput.to_bits(),
        a.long_incoming,
    )
}

fn account_of(a: &AccountSettings) -> Account {
    let credential = match (&a.password_hash, &a.password) {
        (Some(hash), _) => Credential::Argon2(hash.clone()),
        (None, Some(plain)) => Credential::Plain(plain.clone()),
        // Config validation guarantees one of the two; an empty secret matches nothing.
        (None, None) => Credential::Argon2(Secret::new("")),
    };
    Account {
        system_id: a.system_id.clone(),
        shared_id: Arc::from(a.system_id.as_str()),
        max_sessions: a.max_sessions,
        long_incoming: a.long_incoming,
        bind_kinds: a.bind_types.clone(),
        credential,
        throughput: Mutex::new(TokenBucket::new(a.throughput)),
    }
}

/// The first hashed account's hash, in config order: the decoy copies its
/// parameters.
fn decoy_template(accounts: &[AccountSettings]) -> Option<String> {
    accounts
        .iter()
        .find_map(|a| a.password_hash.as_ref())
        .map(|hash| hash.expose().to_owned())
}

impl Accounts {
    /// The accounts, with one argon2 verification at a time per core.
    pub fn from_settings(accounts: &[AccountSettings]) -> Accounts {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Accounts::with_verification_limit(accounts, cores)
    }

    /// The accounts, with at most `limit` argon2 verifications running at once.
    pub fn with_verification_limit(accounts: &[AccountSettings], limit: usize) -> Accounts {
        let by_system_id = accounts
            .iter()
            .map(|a| (a.system_id.clone(), (a.clone(), Arc::new(account_of(a)))))
            .collect();
        Accounts {
            by_system_id: RwLock::new(by_system_id),
            verifier: Verifier::new(limit, decoy_template(accounts)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, (AccountSettings, Arc<Account>)>> {
        // Replaced whole or not at all: a panicked holder leaves it consistent.
        self.by_system_id.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, system_id: &str) -> Option<Arc<Account>> {
        self.read().get(system_id).map(|(_, a)| Arc::clone(a))
    }

    /// Whether `account` is the one its system_id binds to now: a session
    /// that authenticated just before a reload changed it is not.
    pub fn is_current(&self, account: &Arc<Account>) -> bool {
        self.read()
            .get(&account.system_id)
            .is_some_and(|(_, now)| Arc::ptr_eq(now, account))
    }

    /// Takes the accounts of a reloaded configuration. An account whose bind
    /// terms are unchanged keeps its state (its throughput budget); returns
    /// the system_ids removed or whose bind terms changed, whose sessions
    /// must bind again.
    pub fn update(&self, accounts: &[AccountSettings]) -> Vec<String> {
        self.verifier.adopt_template(decoy_template(accounts));
        let mut map = self.by_system_id.write().unwrap_or_else(|e| e.into_inner());
        let mut rebind: Vec<String> = map
            .keys()
            .filter(|id| !accounts.iter().any(|a| &a.system_id == *id))
            .cloned()
            .collect();
        let mut next = HashMap::with_capacity(accounts.len());
        for a in accounts {
            let account = match map.remove(&a.system_id) {
                Some((old, account)) if bind_terms(&old) == bind_terms(a) => account,
                Some(_) => {
                    rebind.push(a.system_id.clone());
                    Arc::new(account_of(a))
                }
                None => Arc::new(account_of(a)),
            };
            next.insert(a.system_id.clone(), (a.clone(), account));
        }
        *map = next;
        rebind.sort_unstable();
        rebind
    }

    /// System ids of accounts configured with a plain password, for the startup warning.
    pub fn with_plain_passwords(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .read()
            .values()
            .filter(|(_, a)| matches!(a.credential, Credential::Plain(_)))
            .map(|(_, a)| a.system_id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// How many argon2 verifications ran, run now, and ran at most at once.
    pub fn verification_stats(&self) -> VerificationStats {
        self.verifier.stats()
    }

    /// Checks system_id, password and bind type. Every path costs the same: one
    /// verification against the account's hash or the decoy (none at all when no
    /// account has a hash), so an unknown system_id is refused as slowly as a wrong
    /// password.
    pub async fn authenticate(
        &self,
        system_id: &str,
        password: &str,
        kind: BindKind,
    ) -> Result<Arc<Account>, BindRefusal> {
        let account = self.get(system_id);
        let password_ok = match account.as_ref().map(|a| &a.credential) {
            Some(Credential::Argon2(hash)) => self.verifier.verify(hash.expose(), password).await,
            Some(Credential::Plain(expected)) => {
                self.verifier.verify_decoy(password).await;
                constant_time_eq(expected.expose(), password)
            }
            None => {
                self.verifier.verify_decoy(password).await;
                false
            }
        };
        let account = account.ok_or(BindRefusal::UnknownSystemId)?;
        if !password_ok {
            return Err(BindRefusal::WrongPassword);
        }
        if !account.allows(kind) {
            return Err(BindRefusal::BindTypeNotAllowed);
        }
        Ok(account)
    }
}

/// Whether `a` equals `b`, in a time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    constant_time_eq_bytes(a.as_bytes(), b.as_bytes())
}

fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    use argon2::Params;

    fn account(system_id: &str, password: Option<&str>, hash: Option<String>) -> AccountSettings {
        AccountSettings {
            system_id: system_id.into(),
            password: password.map(Secret::new),
            password_hash: hash.map(Secret::new),
            upstream: Some("sandbox".into()),
            bind_types: vec![BindKind::Transmitter, BindKind::Transceiver],
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
        let hash = cheap_hash("s3cret", 64);
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

    /// A hash with small parameters: the tests count verifications, not their cost.
    fn cheap_hash(password: &str, m_cost_kib: u32) -> String {
        let params = Params::new(m_cost_kib, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::from(params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_verifications_never_exceed_the_limit() {
        let hash = cheap_hash("s3cret", 4096);
        let accounts = Arc::new(Accounts::with_verification_limit(
            &[account("hashed", None, Some(hash))],
            2,
        ));
        let binds: Vec<_> = (0..24)
            .map(|_| {
                let accounts = Arc::clone(&accounts);
                tokio::spawn(async move {
                    accounts
                        .authenticate("hashed", "wrong", BindKind::Transmitter)
                        .await
                        .err()
                })
            })
            .collect();
        for bind in binds {
            assert_eq!(bind.await.unwrap(), Some(BindRefusal::WrongPassword));
        }
        let stats = accounts.verification_stats();
        assert_eq!(stats.total, 24, "every bind was verified");
        assert_eq!(stats.running, 0);
        assert!(
            (1..=2).contains(&stats.peak),
            "at most 2 verifications at once, saw {}",
            stats.peak
        );
        assert!(
            (1..=2).contains(&stats.memories),
            "argon2's working memory reused, not made per bind: {} made",
            stats.memories
        );
    }

    #[tokio::test]
    async fn every_bind_costs_one_verification_when_an_account_has_a_hash() {
        let accounts = Accounts::from_settings(&[
            account("hashed", None, Some(cheap_hash("s3cret", 64))),
            account("plain", Some("pw"), None),
        ]);
        let tx = BindKind::Transmitter;
        let total = || accounts.verification_stats().total;
        assert_eq!(
            accounts.authenticate("nobody", "pw", tx).await.err(),
            Some(BindRefusal::UnknownSystemId)
        );
        assert_eq!(
            total(),
            1,
            "an unknown system_id is checked against the decoy"
        );
        assert_eq!(
            accounts.authenticate("hashed", "wrong", tx).await.err(),
            Some(BindRefusal::WrongPassword)
        );
        assert_eq!(total(), 2);
        assert_eq!(
            accounts.authenticate("plain", "px", tx).await.err(),
            Some(BindRefusal::WrongPassword)
        );
        assert!(accounts.authenticate("plain", "pw", tx).await.is_ok());
        assert_eq!(
            total(),
            4,
            "a plain password costs a decoy verification too"
        );
        assert!(accounts.authenticate("hashed", "s3cret", tx).await.is_ok());
        assert_eq!(total(), 5);
    }

    #[tokio::test]
    async fn without_hashed_accounts_no_argon2_runs() {
        let accounts = Accounts::from_settings(&[account("plain", Some("pw"), None)]);
        let tx = BindKind::Transmitter;
        assert!(accounts.authenticate("nobody", "pw", tx).await.is_err());
        assert!(accounts.authenticate("plain", "pw", tx).await.is_ok());
        assert_eq!(accounts.verification_stats().total, 0);
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
    fn hash_password_makes_argon2id_with_the_default_parameters() {
        let hash = hash_password("s3cret").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_with(&hash, "s3cret", &mut Vec::new()));
    }

    #[tokio::test]
    async fn an_update_keeps_unchanged_accounts_and_names_those_to_bind_again() {
        let accounts = Accounts::from_settings(&[
            account("same", Some("pw"), None),
            account("limits", Some("pw"), None),
            account("password", Some("pw"), None),
            account("gone", Some("pw"), None),
        ]);
        let same = accounts.get("same").unwrap();
        let limits = accounts.get("limits").unwrap();
        let mut fewer = account("limits", Some("pw"), None);
        fewer.max_queued = 1;
        let rebind = accounts.update(&[
            account("same", Some("pw"), None),
            fewer,
            account("password", Some("new"), None),
            account("added", Some("pw"), None),
        ]);
        assert_eq!(rebind, ["gone", "password"]);
        assert!(accounts.is_current(&same) && accounts.is_current(&limits));
        let tx = BindKind::Transmitter;
        assert!(accounts.authenticate("password", "new", tx).await.is_ok());
        assert!(accounts.authenticate("password", "pw", tx).await.is_err());
        assert!(accounts.authenticate("added", "pw", tx).await.is_ok());
        assert_eq!(
            accounts.authenticate("gone", "pw", tx).await.err(),
            Some(BindRefusal::UnknownSystemId)
        );
    }
}
