//! Which member carries each message: weights, sticky recipients, the
//! fallback tier, and routes chosen by account and destination prefix.

use super::*;

#[tokio::test]
async fn weights_share_the_messages_out_in_proportion() {
    let phones = Phones::start().await;
    let routes =
        "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nweights = [2, 1, 1]\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let messages = (0..300).map(|n| to(&format!("4917612{n:05}"), &format!("weighted {n}")));
    let ids = submit_all(&mut esme, messages).await;

    let holders = phones.until_accepted(&broker, ids.len()).await;
    let at = each_at_one(&holders, &ids);
    let [a, b, c] = phones.counts();
    println!("weights [2, 1, 1] over 300 messages: a {a}, b {b}, c {c}");
    // Smooth weighted round robin is exact while every member is healthy;
    // within 3 % of the 300 all the same.
    for (name, got, share) in [("a", a, 150), ("b", b, 75), ("c", c, 75)] {
        assert!(
            got.abs_diff(share) <= 9,
            "{name} took {got}, its share is {share}"
        );
    }

    // The store names the route and the member that took each message.
    for row in broker.db().outbox().await {
        let id = row.id.to_string();
        assert_eq!(row.state, OutboxState::Enroute, "{row:?}");
        assert_eq!(row.route, "all");
        assert_eq!(row.upstream.as_deref(), Some(at[&id]), "{row:?}");
    }
    let metrics = broker.metrics_text().await;
    for (name, got) in [("a", a), ("b", b), ("c", c)] {
        let line = format!("smpp_broker_routed_total{{route=\"all\",upstream=\"{name}\"}} {got}");
        assert_metric(&metrics, &line);
        // Parts are counted for members without limits too (one SMS each).
        let parts: i64 = broker
            .db()
            .scalar(&format!(
                "SELECT parts_today FROM upstream_usage WHERE upstream = '{name}'"
            ))
            .await;
        assert_eq!(parts, got as i64, "{name}");
    }
}

#[tokio::test]
async fn sticky_keeps_each_recipient_on_one_member() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nsticky = true\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // Five rounds over 30 recipients, each round its own batch.
    let mut ids = Vec::new();
    for round in 0..5 {
        let messages =
            (0..30).map(|r| to(&format!("4917699{r:05}"), &format!("round {round} to {r}")));
        ids.extend(submit_all(&mut esme, messages).await);
    }

    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    // recipient → the members its messages reached
    let mut members: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for (name, fake) in phones.all() {
        for accepted in fake.accepted() {
            let recipient = accepted.phone_numbers.concat();
            members.entry(recipient.clone()).or_default().insert(name);
            *messages.entry(recipient).or_default() += 1;
        }
    }
    assert_eq!(members.len(), 30, "{members:?}");
    for (recipient, at) in &members {
        assert_eq!(at.len(), 1, "{recipient}'s messages went to {at:?}");
        assert_eq!(messages[recipient], 5, "{recipient}");
    }
    let used: BTreeSet<&str> = members.values().flatten().copied().collect();
    println!(
        "sticky: recipients per member {:?}",
        phones.counts().map(|n| n / 5)
    );
    assert!(used.len() > 1, "every recipient on one member: {used:?}");
}

#[tokio::test]
async fn the_fallback_takes_messages_only_while_no_pool_member_can() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"tiered\"\nupstreams = [\"a\", \"b\"]\nfallback = [\"c\"]\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let batch = |from: usize| {
        (from..from + 20).map(|n| to(&format!("49176{n:05}"), &format!("tiered {n}")))
    };

    let mut ids = submit_all(&mut esme, batch(0)).await;
    phones.until_accepted(&broker, 20).await;
    assert_eq!(
        phones.counts(),
        [10, 10, 0],
        "the pool shares, the fallback waits"
    );

    // Both pool members refuse the broker: they are paused, c takes over.
    phones.a.fail_every(1, Fault::Unauthorized);
    phones.b.fail_every(1, Fault::Unauthorized);
    ids.extend(submit_all(&mut esme, batch(20)).await);
    let holders = phones.until_accepted(&broker, 40).await;
    each_at_one(&holders, &ids);
    assert_eq!(phones.counts(), [10, 10, 20]);
    let ready = readyz(&broker).await;
    for (name, state) in [("a", "paused"), ("b", "paused"), ("c", "sending")] {
        assert_eq!(ready["upstreams"][name]["state"], state, "{ready}");
    }
    let metrics = broker.metrics_text().await;
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"tiered\",upstream=\"c\"} 20",
    );
}

#[tokio::test]
async fn routes_are_chosen_by_account_and_longest_prefix() {
    let phones = Phones::start().await;
    let routes = "\
[[accounts]]
system_id = \"shop\"
password = \"shop1234\"
throughput = 100000

[[routes]]
name = \"de\"
prefix = \"+49\"
upstreams = [\"a\"]

[[routes]]
name = \"de-mobile\"
prefix = \"+4917\"
upstreams = [\"b\"]

[[routes]]
name = \"shop-de\"
prefix = \"+49\"
accounts = [\"shop\"]
upstreams = [\"c\"]

[[routes]]
name = \"world\"
upstreams = [\"c\"]
";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut acme = bound(&broker, "acme", "acme1234").await;
    let mut shop = bound(&broker, "shop", "shop1234").await;
    // (account's message_id, the route and member expected)
    let mut expected = Vec::new();
    for (dest, route, member) in [
        // The longest prefix wins.
        ("4930123456", "de", "a"),
        ("4917612345", "de-mobile", "b"),
        // No prefix matches: the general route.
        ("33612345678", "world", "c"),
    ] {
        let id = submit_ok(&mut acme, to(dest, "from acme")).await;
        expected.push((id, dest, route, member));
    }
    for (dest, route, member) in [
        // The account's own +49 route comes before the general +4917.
        ("4917612345", "shop-de", "c"),
        ("4930123456", "shop-de", "c"),
        ("33612345678", "world", "c"),
    ] {
        let id = submit_ok(&mut shop, to(dest, "from shop")).await;
        expected.push((id, dest, route, member));
    }

    let ids: Vec<String> = expected.iter().map(|(id, ..)| id.clone()).collect();
    let holders = phones.until_accepted(&broker, ids.len()).await;
    let at = each_at_one(&holders, &ids);
    for (id, dest, route, member) in &expected {
        let row = broker.db().outbox_row(id).await;
        assert_eq!(
            (row.route.as_str(), row.upstream.as_deref(), at[id]),
            (*route, Some(*member), *member),
            "message {id} to {dest}"
        );
    }
    let metrics = broker.metrics_text().await;
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"shop-de\",upstream=\"c\"} 2",
    );
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"world\",upstream=\"c\"} 2",
    );
}

#[tokio::test]
async fn a_destination_no_route_takes_is_refused_and_nothing_is_stored() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    for dest in ["33612345678", "+33612345678", "1555123456"] {
        let status = submit_status(&mut esme, to(dest, "nowhere")).await;
        assert_eq!(status, CommandStatus::ESME_RINVDSTADR, "to {dest}");
    }
    assert!(broker.db().outbox().await.is_empty(), "no outbox row");
    assert!(broker.db().messages().await.is_empty(), "no message");

    let id = submit_ok(&mut esme, to("4930123456", "somewhere")).await;
    let holders = phones.until_accepted(&broker, 1).await;
    assert_eq!(each_at_one(&holders, std::slice::from_ref(&id))[&id], "a");
    assert_eq!(broker.db().outbox().await.len(), 1);
    assert_metric(
        &broker.metrics_text().await,
        "smpp_broker_submits_total{system_id=\"acme\",command=\"submit_sm\",command_status=\"ESME_RINVDSTADR\"} 3",
    );
}

#[tokio::test]
async fn sticky_moves_only_the_recipients_of_a_member_that_drops_out() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nsticky = true\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let recipient = |r: usize| format!("4917688{r:05}");
    let round = |n: usize| (0..30).map(move |r| to(&recipient(r), &format!("round {n} to {r}")));
    // recipient (as the phones see it) → member, for the messages of one round
    let members_of = |ids: &[String]| -> BTreeMap<String, &'static str> {
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let mut members = BTreeMap::new();
        for (name, fake) in phones.all() {
            for accepted in fake.accepted() {
                if wanted.contains(&accepted.id) {
                    members.insert(accepted.phone_numbers.concat(), name);
                }
            }
        }
        members
    };

    let first = submit_all(&mut esme, round(0)).await;
    phones.until_accepted(&broker, 30).await;
    let before = members_of(&first);
    assert!(
        before.values().any(|m| *m == "a"),
        "a has recipients: {before:?}"
    );

    // a refuses the broker: its recipients move, nobody else's does.
    phones.a.fail_every(1, Fault::Unauthorized);
    let second = submit_all(&mut esme, round(1)).await;
    let holders = phones.until_accepted(&broker, 60).await;
    let ids: Vec<String> = first.iter().chain(&second).cloned().collect();
    each_at_one(&holders, &ids);
    let after = members_of(&second);
    assert_eq!(after.len(), 30);
    for (recipient, was) in &before {
        let now = after[recipient];
        if *was == "a" {
            assert_ne!(now, "a", "{recipient}");
        } else {
            assert_eq!(now, *was, "{recipient} moved although {was} is up");
        }
    }
}

#[tokio::test]
async fn submit_multi_routes_each_destination_on_its_own() {
    use smpp_broker::smpp::pdu::{Body, MultiDest, SubmitMulti};
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\"]\n\
                  [[routes]]\nname = \"fr\"\nprefix = \"+33\"\nupstreams = [\"b\"]\n";
    let broker = phones.broker(["", "", ""], routes).await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let multi = SubmitMulti {
        dests: ["4930123456", "1555123456", "33612345678"]
            .map(|d| MultiDest::Sme(Address::new(1, 1, d)))
            .to_vec(),
        sm: sm(0, 0, b"to many"),
    };
    let resp = esme.request(Body::SubmitMulti(multi)).await;
    assert!(resp.command_status.is_ok(), "{resp:?}");
    let Body::SubmitMultiResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.unsuccess.len(), 1, "{r:?}");
    assert_eq!(r.unsuccess[0].dest.addr, "1555123456");
    assert_eq!(
        r.unsuccess[0].error_status_code,
        CommandStatus::ESME_RINVDSTADR.0
    );
    let first: i64 = r.message_id.parse().expect("a numeric message_id");
    let ids = [first.to_string(), (first + 1).to_string()];
    let holders = phones.until_accepted(&broker, 2).await;
    let at = each_at_one(&holders, &ids);
    assert_eq!((at[&ids[0]], at[&ids[1]]), ("a", "b"));
    let routes: Vec<String> = broker
        .db()
        .outbox()
        .await
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert_eq!(routes, ["de", "fr"]);
}

#[tokio::test]
async fn messages_queued_under_an_accounts_upstream_still_go_through_it_after_it_moves_to_routes() {
    let phones = Phones::start().await;
    // Before: acme sends through a alone (`upstream = "a"`), which is on hold.
    let short_form = format!("{ACME}upstream = \"a\"\n");
    let before = phones
        .config(["hold = true\n", "", ""], "")
        .replace(ACME, &short_form);
    let broker = TestBroker::builder().accounts(&before).start().await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(submit_ok(&mut esme, to("4917600000", text)).await);
    }
    drop(esme);
    let dir = broker.stop().await;

    // After: no account names a any more; acme's routes go to b and c. The
    // queued messages were bound to nobody, but their route is a's short form.
    let after = phones.config(
        ["", "", ""],
        "[[routes]]\nname = \"pool\"\nupstreams = [\"b\", \"c\"]\n",
    );
    let broker = TestBroker::builder()
        .dir(dir)
        .accounts(&after)
        .start()
        .await;
    let holders = phones.until_accepted(&broker, 3).await;
    let at = each_at_one(&holders, &ids);
    assert!(at.values().all(|phone| *phone == "a"), "{at:?}");
    // New messages take the new routes.
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, to("4917600000", "four")).await;
    let holders = phones.until_accepted(&broker, 4).await;
    assert_ne!(holders[&id], ["a"]);
}

#[tokio::test]
async fn two_sims_of_one_phone_take_each_incoming_sms_once() {
    // a and b are the two SIMs of one phone: both registered webhooks there,
    // so the phone posts every incoming SMS to both.
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"phone\"\nupstreams = [\"a\", \"b\"]\n";
    let config = phones.config(["sim_number = 1\n", "sim_number = 2\n", ""], routes);
    let broker = TestBroker::builder().accounts(&config).start().await;
    for (n, sim) in [(1, 2), (2, 1)] {
        let body = serde_json::json!({"event": "sms:received", "payload": {
            "messageId": format!("in-{n}"), "message": "hello", "sender": "+4917600000",
            "recipient": "+4915100000", "simNumber": sim,
            "receivedAt": "2026-12-07T10:00:00.000+01:00"}});
        for upstream in ["a", "b"] {
            assert_eq!(broker.post_event(upstream, &body).await, 200);
        }
    }
    assert_eq!(broker.db().deliveries_waiting().await, 2, "each SMS once");
}
