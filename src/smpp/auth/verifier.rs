//! argon2 verifications, bounded: at most `limit` run at once, on the blocking
//! pool, each in a working memory kept for reuse.
//!
//! Reuse matters as much as the bound. Allocating argon2's memory (19 MiB with
//! the default parameters) for each verification let glibc raise its mmap
//! threshold and keep the freed blocks in its heaps: with two verifications at
//! a time, 200 binds still took the process from 11 to 400 MB. With at most
//! `limit` working memories, made once and reused, the memory is `limit` times
//! argon2's cost, whatever the number of binds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

/// A reading of the verification counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationStats {
    /// Verifications started since the broker started, decoys included.
    pub total: u64,
    /// Verifications running now.
    pub running: usize,
    /// The most that ever ran at once.
    pub peak: usize,
    /// Working memories made so far (each the size of argon2's memory cost).
    pub memories: usize,
}

#[derive(Debug, Default)]
struct Counters {
    total: AtomicU64,
    running: AtomicUsize,
    peak: AtomicUsize,
    memories: AtomicUsize,
}

/// Counts one verification as running while it lives.
struct Running<'a>(&'a Counters);

impl<'a> Running<'a> {
    fn start(counters: &'a Counters) -> Running<'a> {
        counters.total.fetch_add(1, Ordering::Relaxed);
        let now = counters.running.fetch_add(1, Ordering::SeqCst) + 1;
        counters.peak.fetch_max(now, Ordering::SeqCst);
        Running(counters)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Working memories not in use; never more than the permits.
#[derive(Default)]
struct Memories(Mutex<Vec<Vec<Block>>>);

impl Memories {
    fn take(&self, counters: &Counters) -> Vec<Block> {
        let spare = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        spare.unwrap_or_else(|| {
            counters.memories.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        })
    }

    fn put_back(&self, memory: Vec<Block>) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(memory);
    }
}

pub(super) struct Verifier {
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    memories: Arc<Memories>,
    /// A configured hash whose parameters the decoy copies; unset while no
    /// account has one.
    decoy_template: OnceLock<Arc<str>>,
    /// Made on first use, off the async threads.
    decoy: Arc<OnceLock<String>>,
}

impl Verifier {
    pub(super) fn new(limit: usize, decoy_template: Option<String>) -> Verifier {
        let verifier = Verifier {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            counters: Arc::default(),
            memories: Arc::default(),
            decoy_template: OnceLock::new(),
            decoy: Arc::default(),
        };
        verifier.adopt_template(decoy_template);
        verifier
    }

    /// The decoy copies `template` unless it already copies another: a reload
    /// that adds the first hashed account makes unknown ids as slow as it.
    pub(super) fn adopt_template(&self, template: Option<String>) {
        if let Some(template) = template {
            let _ = self.decoy_template.set(Arc::from(template));
        }
    }

    pub(super) fn stats(&self) -> VerificationStats {
        VerificationStats {
            total: self.counters.total.load(Ordering::Relaxed),
            running: self.counters.running.load(Ordering::SeqCst),
            peak: self.counters.peak.load(Ordering::SeqCst),
            memories: self.counters.memories.load(Ordering::Relaxed),
        }
    }

    pub(super) async fn verify(&self, phc_hash: &str, password: &str) -> bool {
        let hash = phc_hash.to_owned();
        self.run(password, move || hash).await
    }

    /// The same work as a real verification, whose result means nothing.
    pub(super) async fn verify_decoy(&self, password: &str) {
        let Some(template) = self.decoy_template.get().cloned() else {
            return;
        };
        let decoy = Arc::clone(&self.decoy);
        self.run(password, move || {
            decoy.get_or_init(|| decoy_hash(&template)).clone()
        })
        .await;
    }

    /// Verifies `password` against the hash `hash_of` gives, once a permit is free.
    async fn run(&self, password: &str, hash_of: impl FnOnce() -> String + Send + 'static) -> bool {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return false;
        };
        let counters = Arc::clone(&self.counters);
        let memories = Arc::clone(&self.memories);
        let password = password.to_owned();
        // Permit and memory stay with the blocking task: a session that goes away
        // while its verification runs frees neither before the task is done.
        tokio::task::spawn_blocking(move || {
            let running = Running::start(&counters);
            let mut memory = memories.take(&counters);
            let verified = verify_with(&hash_of(), &password, &mut memory);
            memories.put_back(memory);
            // In this order: the next verification starts only once this one is over.
            drop(running);
            drop(permit);
            verified
        })
        .await
        .unwrap_or(false)
    }
}

/// Whether `password` matches the PHC string, computed in `memory` (grown to the
/// hash's memory cost if it is smaller). A malformed hash matches nothing.
pub fn verify_with(phc_hash: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc_hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut computed = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, &mut memory[..])
        .is_ok()
        && super::constant_time_eq_bytes(&computed, expected.as_bytes())
}

/// A hash of a random password with the template's algorithm, version and
/// parameters: verifying against it costs what verifying against the template does.
fn decoy_hash(template: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut password = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut password);
    let customized = PasswordHash::new(template).and_then(|parsed| {
        let params = Params::try_from(&parsed)?;
        Argon2::default()
            .hash_password_customized(
                &password,
                Some(parsed.algorithm),
                parsed.version,
                params,
                &salt,
            )
            .map(|hash| hash.to_string())
    });
    // Config validation parsed the template; the default parameters are a fallback only.
    customized
        .or_else(|_| {
            Argon2::default()
                .hash_password(&password, &salt)
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    fn hash_with(algorithm: Algorithm, version: Version, params: Params, password: &str) -> String {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::new(algorithm, version, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn verify_with_agrees_with_the_argon2_crate_and_reuses_its_memory() {
        let mut memory = Vec::new();
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(64, 1, 1, None),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x10,
                Params::new(128, 3, 2, Some(24)),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x13,
                Params::new(32, 2, 1, Some(64)),
            ),
        ];
        for (algorithm, version, params) in cases {
            let hash = hash_with(algorithm, version, params.unwrap(), "s3cret");
            let parsed = PasswordHash::new(&hash).unwrap();
            for password in ["s3cret", "s3cre", "", "s3cret!"] {
                let expected = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(
                    verify_with(&hash, password, &mut memory),
                    expected,
                    "{hash} {password:?}"
                );
            }
        }
        assert_eq!(memory.len(), 128, "grown to the largest cost (128 KiB)");
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        let mut memory = Vec::new();
        assert!(!verify_with("not-a-phc-string", "pw", &mut memory));
        assert!(!verify_with(
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
            "pw",
            &mut memory
        ));
        assert!(!verify_with(
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "pw",
            &mut memory
        ));
    }

    #[test]
    fn the_decoy_copies_the_template_parameters_with_its_own_salt() {
        let params = Params::new(128, 3, 2, Some(24)).unwrap();
        let template = hash_with(Algorithm::Argon2i, Version::V0x10, params, "pw");
        let decoy = decoy_hash(&template);
        let (template, decoy) = (
            PasswordHash::new(&template).unwrap(),
            PasswordHash::new(&decoy).unwrap(),
        );
        assert_eq!(decoy.algorithm, template.algorithm);
        assert_eq!(decoy.version, template.version);
        assert_eq!(
            Params::try_from(&decoy).unwrap(),
            Params::try_from(&template).unwrap()
        );
        assert_ne!(decoy.salt, template.salt);
        assert!(!verify_with(&decoy.to_string(), "pw", &mut Vec::new()));
    }
}
