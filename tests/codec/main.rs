//! The SMPP v3.4 codec on its own, without a broker: property tests of the
//! round trip, differential tests against rusmpp (an independent codec), and
//! over 100,000 mutated PDUs. `cargo test --test codec`.

mod differential;
mod mutation;
mod oracle;
mod roundtrip;
mod strategies;
