//! What a reload replaces while the broker runs: a value read often and
//! swapped whole, so that every reader sees either the old or the new one.

use std::sync::{Arc, RwLock};

/// A value readers take a cheap snapshot of, and a reload swaps.
pub struct Live<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The value now; it stays whole however long it is held.
    pub fn load(&self) -> Arc<T> {
        // The lock only guards a pointer swap, which cannot be left halfway.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `value` in place for every later `load`.
    pub fn store(&self, value: T) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_taken_before_a_swap_keeps_the_old_value() {
        let live = Live::new(vec![1, 2]);
        let before = live.load();
        live.store(vec![3]);
        assert_eq!(*before, vec![1, 2]);
        assert_eq!(*live.load(), vec![3]);
    }
}
