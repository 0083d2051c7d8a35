//! Which sessions are bound, per system_id. Binding registers a session and the
//! returned [`Registration`] removes it when dropped, so a session that ends in any
//! way (unbind, error, panic, shutdown) never keeps counting against max_sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::pdu::BindKind;
use crate::store::{ClusterHandle, StoreError};
use crate::tasks::Tasks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundSession {
    pub session_id: u64,
    pub kind: BindKind,
    /// The ESME's address, as the console shows it.
    pub peer: std::net::SocketAddr,
    /// When the bind succeeded.
    pub bound_at: std::time::SystemTime,
    /// Its bind as recorded in the store, once it is.
    pub bind: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Registry {
    by_system_id: Mutex<HashMap<String, Vec<BoundSession>>>,
    /// Each bound session's stop: cancelling it unbinds the session.
    stops: Mutex<HashMap<u64, CancellationToken>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<BoundSession>>> {
        // The map stays consistent even if a holder panicked: every update is one push or retain.
        self.by_system_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers the session unless the account already has `max_sessions` bound.
    pub fn try_register(
        self: &Arc<Self>,
        system_id: &str,
        session: BoundSession,
        max_sessions: usize,
        stop: CancellationToken,
    ) -> Option<Registration> {
        let mut map = self.lock();
        let sessions = map.entry(system_id.to_owned()).or_default();
        if sessions.len() >= max_sessions {
            return None;
        }
        sessions.push(session);
        self.stops().insert(session.session_id, stop);
        Some(Registration {
            registry: Arc::clone(self),
            system_id: system_id.to_owned(),
            session_id: session.session_id,
            shared: None,
        })
    }

    fn stops(&self) -> MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unbinds the bound session `session_id` (an operator's disconnect): it
    /// answers what it has in flight, sends unbind and closes. False when no
    /// such session is bound.
    pub fn disconnect(&self, session_id: u64) -> bool {
        match self.stops().get(&session_id) {
            Some(stop) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Unbinds every session of `system_id` (its account was removed or
    /// changed by a reload); returns how many were told to.
    pub fn disconnect_account(&self, system_id: &str) -> usize {
        let sessions = self.sessions(system_id);
        sessions
            .iter()
            .filter(|s| self.disconnect(s.session_id))
            .count()
    }

    /// Notes the store's number for the bind of `session_id` (`session_binds`).
    pub fn set_bind(&self, session_id: u64, bind: i64) {
        for session in self.lock().values_mut().flatten() {
            if session.session_id == session_id {
                session.bind = Some(bind);
            }
        }
    }

    /// The recorded binds of the sessions bound now.
    pub fn binds(&self) -> Vec<i64> {
        self.lock()
            .values()
            .flatten()
            .filter_map(|s| s.bind)
            .collect()
    }

    pub fn sessions(&self, system_id: &str) -> Vec<BoundSession> {
        self.lock().get(system_id).cloned().unwrap_or_default()
    }

    /// Bound sessions per account and bind type (absent: none).
    pub fn counts(&self) -> HashMap<(String, BindKind), usize> {
        let mut counts = HashMap::new();
        for (system_id, sessions) in self.lock().iter() {
            for session in sessions {
                *counts.entry((system_id.clone(), session.kind)).or_default() += 1;
            }
        }
        counts
    }

    pub fn bound_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// A bound session's place in the registry; dropping it unregisters the session.
pub struct Registration {
    registry: Arc<Registry>,
    system_id: String,
    session_id: u64,
    /// Where the session is counted for the whole cluster too, if it is.
    shared: Option<SharedSessions>,
}

impl Registration {
    /// Counts the session on the cluster's shared store as well: Ok(false)
    /// when the account has its `max_sessions` on the nodes together.
    pub async fn share(
        &mut self,
        shared: &SharedSessions,
        max_sessions: usize,
    ) -> Result<bool, StoreError> {
        let admitted = shared
            .cluster
            .admit_session(&self.system_id, self.session_id, max_sessions)
            .await?;
        if admitted {
            self.shared = Some(shared.clone());
        }
        Ok(admitted)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.stops().remove(&self.session_id);
        if let Some(shared) = &self.shared {
            let _ = shared.ended.send(self.session_id);
        }
        let mut map = self.registry.lock();
        if let Some(sessions) = map.get_mut(&self.system_id) {
            sessions.retain(|s| s.session_id != self.session_id);
            if sessions.is_empty() {
                map.remove(&self.system_id);
            }
        }
    }
}

/// The sessions of this node as the cluster counts them (a shared PostgreSQL
/// store): bound ones are added at bind, and a background task removes ended
/// ones, since a session ends in a destructor, which cannot wait.
#[derive(Clone)]
pub struct SharedSessions {
    cluster: ClusterHandle,
    ended: mpsc::UnboundedSender<u64>,
}

impl SharedSessions {
    pub fn start(cluster: ClusterHandle, tasks: &Tasks) -> SharedSessions {
        let (ended, mut ids) = mpsc::unbounded_channel::<u64>();
        let (remover, stop) = (cluster.clone(), tasks.stop_token());
        tasks.spawn(async move {
            loop {
                let first = tokio::select! {
                    _ = stop.cancelled() => break,
                    id = ids.recv() => match id {
                        Some(id) => id,
                        None => break,
                    },
                };
                let mut batch = vec![first as i64];
                while let Ok(id) = ids.try_recv() {
                    batch.push(id as i64);
                }
                // Not removed: the account may be refused a session until this
                // node restarts or is found dead, which clears its rows.
                if let Err(err) = remover.sessions_ended(&batch).await {
                    warn!(error = %err, sessions = batch.len(), "ended sessions not uncounted");
                }
            }
        });
        SharedSessions { cluster, ended }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u64) -> BoundSession {
        BoundSession {
            session_id: id,
            kind: BindKind::Transceiver,
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
            bound_at: std::time::SystemTime::UNIX_EPOCH,
            bind: None,
        }
    }

    #[test]
    fn max_sessions_is_enforced_and_drop_frees_the_slot() {
        let registry = Registry::new();
        let stop = CancellationToken::new;
        let first = registry
            .try_register("acme", session(1), 2, stop())
            .unwrap();
        let _second = registry
            .try_register("acme", session(2), 2, stop())
            .unwrap();
        assert!(registry
            .try_register("acme", session(3), 2, stop())
            .is_none());
        assert!(registry
            .try_register("other", session(4), 2, stop())
            .is_some());
        assert_eq!(registry.sessions("acme").len(), 2);
        drop(first);
        assert_eq!(registry.sessions("acme"), vec![session(2)]);
        assert!(registry
            .try_register("acme", session(5), 2, stop())
            .is_some());
    }

    #[test]
    fn a_disconnect_stops_the_bound_session_it_names() {
        let registry = Registry::new();
        let (one, two) = (CancellationToken::new(), CancellationToken::new());
        let first = registry
            .try_register("acme", session(1), 2, one.clone())
            .unwrap();
        let _second = registry
            .try_register("acme", session(2), 2, two.clone())
            .unwrap();
        assert!(registry.disconnect(1));
        assert!(one.is_cancelled() && !two.is_cancelled());
        drop(first);
        assert!(!registry.disconnect(1), "no longer bound");
        assert!(!registry.disconnect(99));
    }
}
