//! message_ids, the same on every backend: milliseconds since 2020-01-01
//! shifted left 20 bits, plus a counter. Unique, increasing across restarts
//! (and, on PostgreSQL, across nodes), at most 19 decimal digits, and the
//! idempotency key at the upstream.

const ID_EPOCH_MS: i64 = 1_577_836_800_000;

/// The smallest message_id handed out at `ms` (Unix ms) or later.
pub fn first_id_at(ms: i64) -> i64 {
    (ms - ID_EPOCH_MS).max(0) << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_time_and_fit_in_19_digits() {
        assert_eq!(first_id_at(ID_EPOCH_MS - 5), 0);
        assert_eq!(first_id_at(ID_EPOCH_MS + 1), 1 << 20);
        assert!(first_id_at(1_790_000_000_000) < first_id_at(1_790_000_000_001));
        // 2^42 ms after 2020 (the year 2159) an id still has at most 19 digits.
        let far = ID_EPOCH_MS + (1_i64 << 42);
        assert!(first_id_at(far).to_string().len() <= 19);
    }
}
