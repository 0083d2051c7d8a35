// sqlx::migrate! reads migrations/ when the crate compiles, and cargo does not
// know: without this a new migration is missing from an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
