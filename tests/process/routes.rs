//! SIGKILL while a weighted pool of three upstreams is being sent to: after
//! the restart on the same database every acknowledged message reaches
//! exactly one member, once. A message bound to a member before the kill (its
//! request out, or only chosen) goes back to that member, which recognises its
//! id; none is lost and none reaches a second member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use smpp_broker::smpp::pdu::{Address, BindKind};
use testkit::db::{Db, OutboxState};
use testkit::fake_smsgate::{FakeSmsGate, Fault, Mode};
use testkit::process::{write_config, BrokerProcess};
use testkit::sms::{sm, submit_all};
use testkit::{eventually, Esme};

use crate::launch;

const SENT: usize = 600;
/// The kill comes once the members took this many between them.
const KILL_AFTER: usize = 200;

/// Starts the broker on `config` off the runtime's threads (the fakes answer
/// meanwhile).
async fn start(config: &std::path::Path) -> BrokerProcess {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || launch(&config).spawn())
        .await
        .expect("the broker starts")
}

/// message id → (the members that accepted it, its texts there)
fn holders(fakes: &[(&'static str, FakeSmsGate)]) -> BTreeMap<String, Vec<(&'static str, String)>> {
    let mut holders: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    for (name, fake) in fakes {
        for accepted in fake.accepted() {
            let text = accepted.text.unwrap_or_default();
            holders.entry(accepted.id).or_default().push((name, text));
        }
    }
    holders
}

/// The broker's config in `dir`: an upstream per fake with `keys`, then the
/// account acme with the rest of its keys and its routes (`account_and_routes`).
fn pool_config(
    dir: &std::path::Path,
    fakes: &[(&str, FakeSmsGate)],
    keys: &str,
    account_and_routes: &str,
) -> std::path::PathBuf {
    let mut tables = String::new();
    for (name, fake) in fakes {
        tables.push_str(&fake.upstream_table(name, keys));
    }
    tables.push_str("[[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\n");
    tables.push_str(account_and_routes);
    write_config(dir, &tables)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_dispatch_across_a_weighted_pool_loses_and_repeats_nothing() {
    let mut fakes = Vec::new();
    for name in ["a", "b", "c"] {
        fakes.push((name, FakeSmsGate::start(Mode::Cloud).await));
    }
    // Some requests are taken but never answered: the broker cannot know
    // whether the member has those, so they may go to that member only.
    fakes[0].1.fail_every(10, Fault::AcceptThenReset);
    fakes[2].1.fail_every(5, Fault::AcceptThenReset);
    let dir = tempfile::tempdir().unwrap();
    // A few seconds' work in all: the kill finds requests on the wire and
    // many more messages claimed and bound to their member, not yet sent.
    let config = pool_config(
        dir.path(),
        &fakes,
        "rate = 150\nmax_in_flight = 4\nretry_schedule = [\"100ms\"]\n",
        "throughput = 100000\n[[routes]]\nname = \"pool\"\nupstreams = [\"a\", \"b\", \"c\"]\n\
         weights = [3, 2, 1]\n",
    );
    let broker = start(&config).await;

    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    let messages = (0..SENT).map(|n| {
        let mut message = sm(0, 0, format!("pool {n}").as_bytes());
        message.dest = Address::new(1, 1, format!("4917612{n:05}"));
        message
    });
    let ids = submit_all(&mut esme, messages).await;
    // id → the text the member must receive
    let expected: BTreeMap<String, String> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), format!("pool {n}")))
        .collect();
    assert_eq!(expected.len(), SENT, "a message_id for each");

    let accepted = || fakes.iter().map(|(_, f)| f.accepted_count()).sum::<usize>();
    eventually(
        Duration::from_secs(10),
        "the members take their first messages",
        || async {
            let n = accepted();
            if n >= KILL_AFTER {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await;
    tokio::task::spawn_blocking(move || broker.kill9())
        .await
        .unwrap();
    let before_kill = accepted();
    // Messages bound to a member and not yet recorded as taken: each must go
    // back to its member.
    let bound_at_kill: Vec<(i64, String)> = Db::at(dir.path())
        .rows("SELECT id, upstream FROM outbox WHERE state != 'enroute' AND upstream IS NOT NULL")
        .await;
    assert!(
        before_kill < SENT,
        "the kill came mid-dispatch: {before_kill} taken"
    );

    let broker = start(&config).await;
    let what = "every acknowledged message at a member and the outbox settled";
    eventually(Duration::from_secs(20), what, || async {
        let rows = Db::at(dir.path()).outbox().await;
        let waiting = rows
            .iter()
            .filter(|r| r.state != OutboxState::Enroute)
            .count();
        let at_members = holders(&fakes).len();
        if waiting == 0 && rows.len() == SENT && at_members >= SENT {
            Ok(())
        } else {
            Err(format!(
                "outbox rows not enroute {waiting}, messages at the members {at_members}"
            ))
        }
    })
    .await;

    let holders = holders(&fakes);
    let mut failures = Vec::new();
    for (id, at) in &holders {
        match (expected.get(id), at.as_slice()) {
            (None, _) => failures.push(format!("{id} was never acknowledged: {at:?}")),
            (Some(text), [(_, got)]) if got == text => {}
            (Some(text), _) => failures.push(format!("{id} ({text:?}) arrived as {at:?}")),
        }
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !holders.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        failures.push(format!(
            "{} acknowledged never arrived: {missing:?}",
            missing.len()
        ));
    }
    let mut texts = BTreeSet::new();
    for (_, fake) in &fakes {
        for accepted in fake.accepted() {
            let text = accepted.text.unwrap_or_default();
            if !texts.insert(text.clone()) {
                failures.push(format!("{text:?} arrived twice (under another id)"));
            }
        }
    }
    for (id, member) in &bound_at_kill {
        let at = holders
            .get(&id.to_string())
            .map(|at| at.iter().map(|(m, _)| *m).collect());
        if at != Some(vec![member.as_str()]) {
            failures.push(format!(
                "{id}, bound to {member} at the kill, went to {at:?}"
            ));
        }
    }
    // The store names the member that holds each message.
    for row in Db::at(dir.path()).outbox().await {
        let id = row.id.to_string();
        let member = holders
            .get(&id)
            .and_then(|at| at.first())
            .map(|(name, _)| *name);
        if row.upstream.as_deref() != member {
            failures.push(format!(
                "outbox {id} names {:?}, {member:?} has it",
                row.upstream
            ));
        }
    }
    let counts: Vec<(&str, usize, usize)> = fakes
        .iter()
        .map(|(name, f)| (*name, f.accepted_count(), f.post_count()))
        .collect();
    println!(
        "routes SIGKILL: taken before the kill {before_kill}, bound and not yet taken at \
         the kill {}; (member, taken, POST requests) {counts:?}",
        bound_at_kill.len()
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(
        !bound_at_kill.is_empty(),
        "the kill found messages bound to members"
    );
    // Every member took its part. a and c cool down after each lost answer
    // (their share moves meanwhile), so only b, which loses none, is held to
    // at least its weight's share.
    assert!(counts.iter().all(|(_, taken, _)| *taken > 0), "{counts:?}");
    assert!(
        counts[1].1 >= 200 - 30,
        "b took {}: {counts:?}",
        counts[1].1
    );
    let posts: usize = counts.iter().map(|(_, _, posts)| posts).sum();
    assert!(posts > SENT, "resends met the 409 path: {counts:?}");
    drop(broker);
}

/// A SIGKILL while a member holds a message whose answer has not come back:
/// the restarted broker cannot know whether the member has it, so it sends it
/// to that member again; when the member refuses that resend outright (a 429),
/// the message must still go to no other member (here a has it: a second
/// member would send the SMS a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_taken_before_a_sigkill_and_refused_after_it_stays_with_its_member() {
    let mut fakes = Vec::new();
    for name in ["a", "b"] {
        fakes.push((name, FakeSmsGate::start(Mode::Cloud).await));
    }
    // a stores the message and holds its answer back past the kill; the
    // resend after the restart meets a 429 (a cools down for a second).
    fakes[0].1.push_faults([
        Fault::AcceptThenStall(Duration::from_secs(60)),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let config = pool_config(
        dir.path(),
        &fakes,
        "rate = 100\nretry_schedule = [\"100ms\"]\n",
        "[[routes]]\nname = \"pool\"\nupstreams = [\"a\", \"b\"]\n",
    );
    let broker = start(&config).await;
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    // The round robin starts at a.
    let id = testkit::sms::submit_ok(&mut esme, sm(0, 0, b"taken before the kill")).await;
    fakes[0]
        .1
        .wait_for_accepted(1, Duration::from_secs(10))
        .await;
    tokio::task::spawn_blocking(move || broker.kill9())
        .await
        .unwrap();
    let row = Db::at(dir.path()).outbox_row(&id).await;
    assert_eq!(
        (row.state, row.upstream.as_deref()),
        (OutboxState::Sending, Some("a")),
        "bound to a, its answer not recorded: {row:?}"
    );

    let broker = start(&config).await;
    let row = eventually(
        Duration::from_secs(10),
        "the restarted broker records an acceptance",
        || async {
            let row = Db::at(dir.path()).outbox_row(&id).await;
            if row.state == OutboxState::Enroute {
                Ok(row)
            } else {
                Err(row)
            }
        },
    )
    .await;
    let at: Vec<&str> = fakes
        .iter()
        .filter(|(_, fake)| fake.accepted().iter().any(|a| a.id == id))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        at,
        ["a"],
        "message {id} was taken by a before the kill; after the restart a refused \
         the resend with a 429, and the message must still reach no other member; \
         outbox row {row:?}"
    );
    assert_eq!(row.upstream.as_deref(), Some("a"), "{row:?}");
    drop(broker);
}
