//! Independent SMPP clients against the in-process broker: python-smpplib and
//! Perl's Net::SMPP as child processes running the scenario scripts beside this
//! file (through `script`), and rusmppc in process. Needs python3 (with pip, or
//! smpplib installed) and perl with Net::SMPP: `cargo test --test interop`.

mod netsmpp;
mod rusmppc;
mod script;
mod smpplib;
