use bytes::Bytes;

use super::*;
use crate::smpp::pdu::CommandStatus;

const NOW: i64 = 1_795_359_600_000; // 2026-11-22 15:00 UTC

fn account() -> AccountPolicy {
    AccountPolicy {
        system_id: "acme".into(),
        routes: crate::routing::AccountRoutes::only("sandbox"),
        alphabet: DefaultAlphabet::Gsm7,
    }
}

fn at() -> SubmitTime {
    SubmitTime {
        now_ms: NOW,
        default_validity_ms: 48 * 3_600_000,
    }
}

fn sm(short_message: &[u8]) -> Sm {
    Sm {
        source: Address::new(1, 1, "4915100000"),
        dest: Address::new(1, 1, "4917600000"),
        short_message: Bytes::copy_from_slice(short_message),
        ..Sm::default()
    }
}

fn status(sm: Sm) -> CommandStatus {
    from_submit_sm(&sm, &account(), at()).expect_err("refused")
}

#[test]
fn a_plain_submit_becomes_a_message() {
    let m = from_submit_sm(
        &Sm {
            registered_delivery: 1,
            priority_flag: 2,
            ..sm(b"Hello")
        },
        &account(),
        at(),
    )
    .unwrap();
    assert_eq!(m.body, b"Hello");
    assert_eq!(m.charset, Charset::Gsm7);
    assert_eq!(m.dest.addr, "4917600000");
    assert_eq!((m.registered_delivery, m.priority), (1, 2));
    assert_eq!(m.expires_at, NOW + 48 * 3_600_000, "default validity");
    assert!(m.concat.is_none() && m.scheduled_at.is_none());
}

#[test]
fn field_statuses_of_a5() {
    use CommandStatus as S;
    let cases: Vec<(Sm, CommandStatus)> = vec![
        (
            Sm {
                source: Address::new(7, 1, "1"),
                ..sm(b"x")
            },
            S::ESME_RINVSRCTON,
        ),
        (
            Sm {
                source: Address::new(1, 2, "1"),
                ..sm(b"x")
            },
            S::ESME_RINVSRCNPI,
        ),
        (
            Sm {
                source: Address::new(1, 1, "abc"),
                ..sm(b"x")
            },
            S::ESME_RINVSRCADR,
        ),
        (
            Sm {
                dest: Address::new(9, 1, "1"),
                ..sm(b"x")
            },
            S::ESME_RINVDSTTON,
        ),
        (
            Sm {
                dest: Address::new(5, 0, "Shop"),
                ..sm(b"x")
            },
            S::ESME_RINVDSTTON,
        ),
        (
            Sm {
                dest: Address::new(1, 5, "1"),
                ..sm(b"x")
            },
            S::ESME_RINVDSTNPI,
        ),
        (
            Sm {
                dest: Address::new(1, 1, ""),
                ..sm(b"x")
            },
            S::ESME_RINVDSTADR,
        ),
        (
            Sm {
                dest: Address::new(1, 1, "12ab"),
                ..sm(b"x")
            },
            S::ESME_RINVDSTADR,
        ),
        (
            Sm {
                esm_class: 0x08,
                ..sm(b"x")
            },
            S::ESME_RINVESMCLASS,
        ),
        (
            Sm {
                priority_flag: 4,
                ..sm(b"x")
            },
            S::ESME_RINVPRTFLG,
        ),
        (
            Sm {
                registered_delivery: 0x20,
                ..sm(b"x")
            },
            S::ESME_RINVREGDLVFLG,
        ),
        (
            Sm {
                replace_if_present_flag: 1,
                ..sm(b"x")
            },
            S::ESME_RINVSUBREP,
        ),
        (
            Sm {
                replace_if_present_flag: 2,
                ..sm(b"x")
            },
            S::ESME_RINVREPFLAG,
        ),
        (
            Sm {
                sm_default_msg_id: 1,
                ..sm(b"x")
            },
            S::ESME_RINVDFTMSGID,
        ),
        (
            Sm {
                schedule_delivery_time: "261399000000000+".into(),
                ..sm(b"x")
            },
            S::ESME_RINVSCHED,
        ),
        (
            Sm {
                validity_period: "2611221500000a0+".into(),
                ..sm(b"x")
            },
            S::ESME_RINVEXPIRY,
        ),
        (
            Sm {
                validity_period: "251122150000000+".into(),
                ..sm(b"x")
            },
            S::ESME_RINVEXPIRY,
        ),
        (
            Sm {
                data_coding: 0x05,
                ..sm(b"x")
            },
            S::ESME_RSUBMITFAIL,
        ),
        (
            Sm {
                data_coding: 0x08,
                ..sm(&[0x00])
            },
            S::ESME_RSUBMITFAIL,
        ),
        (sm(&[0x41, 0x80]), S::ESME_RSUBMITFAIL),
    ];
    for (case, expected) in cases {
        assert_eq!(status(case.clone()), expected, "{case:?}");
    }
    // An alphanumeric sender is fine.
    assert!(from_submit_sm(
        &Sm {
            source: Address::new(5, 0, "My Shop"),
            ..sm(b"x")
        },
        &account(),
        at()
    )
    .is_ok());
}

#[test]
fn schedule_and_validity_in_both_forms() {
    let m = from_submit_sm(
        &Sm {
            schedule_delivery_time: "000000010000000R".into(),
            validity_period: "261123150000000+".into(),
            ..sm(b"x")
        },
        &account(),
        at(),
    )
    .unwrap();
    assert_eq!(m.scheduled_at, Some(NOW + 3_600_000));
    assert_eq!(m.expires_at, NOW + 86_400_000);
    let late = Sm {
        schedule_delivery_time: "000003000000000R".into(),
        validity_period: "000001000000000R".into(),
        ..sm(b"x")
    };
    assert_eq!(
        status(late),
        CommandStatus::ESME_RINVSCHED,
        "scheduled after it expires"
    );
}

#[test]
fn encodings_are_checked_and_kept_as_octets() {
    let gsm = crate::text::gsm7::encode("@€{}^\\").unwrap();
    let m = from_submit_sm(&sm(&gsm), &account(), at()).unwrap();
    assert_eq!(m.body, gsm);
    let emoji = [0x00, 0x48, 0xD8, 0x3D, 0xDE, 0x00];
    let m = from_submit_sm(
        &Sm {
            data_coding: 8,
            ..sm(&emoji)
        },
        &account(),
        at(),
    )
    .unwrap();
    assert_eq!(m.charset, Charset::Ucs2);
    let latin1 = AccountPolicy {
        alphabet: DefaultAlphabet::Latin1,
        ..account()
    };
    let m = from_submit_sm(&sm(&[0xE9]), &latin1, at()).unwrap();
    assert_eq!(m.charset, Charset::Latin1);
    assert_eq!(
        from_submit_sm(
            &Sm {
                data_coding: 3,
                ..sm(&[0xE9])
            },
            &account(),
            at()
        )
        .unwrap()
        .charset,
        Charset::Latin1
    );
}

#[test]
fn message_payload_instead_of_short_message() {
    let mut with_payload = sm(b"");
    with_payload
        .tlvs
        .push(tag::MESSAGE_PAYLOAD, vec![b'a'; 600]);
    let m = from_submit_sm(&with_payload, &account(), at()).unwrap();
    assert_eq!(m.body.len(), 600);
    let mut both = sm(b"x");
    both.tlvs.push(tag::MESSAGE_PAYLOAD, b"y".to_vec());
    assert_eq!(status(both), CommandStatus::ESME_RINVMSGLEN);
}

#[test]
fn udh_8_and_16_bit_references() {
    let mut eight = vec![0x05, 0x00, 0x03, 0x2A, 0x03, 0x02];
    eight.extend_from_slice(b"part two");
    let m = from_submit_sm(
        &Sm {
            esm_class: 0x40,
            ..sm(&eight)
        },
        &account(),
        at(),
    )
    .unwrap();
    assert_eq!(m.body, b"part two");
    let part = m.concat.unwrap();
    assert_eq!((part.total, part.seq), (3, 2));
    assert!(
        part.key.ends_with("|udh8:42/3")
            && part.key.starts_with("acme|1.1.4915100000|1.1.4917600000"),
        "{}",
        part.key
    );

    let mut sixteen = vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01];
    sixteen.extend_from_slice(b"one");
    let m = from_submit_sm(
        &Sm {
            esm_class: 0x40,
            ..sm(&sixteen)
        },
        &account(),
        at(),
    )
    .unwrap();
    assert!(m.concat.unwrap().key.ends_with("|udh16:4660/2"));

    // Other elements are walked over; a concatenation element with seq 0 is ignored.
    let mut ports_and_bad = vec![
        0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x01, 0x02, 0x00,
    ];
    ports_and_bad.extend_from_slice(b"x");
    let m = from_submit_sm(
        &Sm {
            esm_class: 0x40,
            data_coding: 4,
            ..sm(&ports_and_bad)
        },
        &account(),
        at(),
    )
    .unwrap();
    assert_eq!((m.body.as_slice(), m.concat), (&b"x"[..], None));

    for broken in [vec![], vec![0x05, 0x00, 0x03], vec![0x03, 0x00, 0x05, 0x01]] {
        assert_eq!(
            status(Sm {
                esm_class: 0x40,
                ..sm(&broken)
            }),
            CommandStatus::ESME_RINVESMCLASS,
            "{broken:?}"
        );
    }
    let shift = [0x03, 0x24, 0x01, 0x01, b'x'];
    assert_eq!(
        status(Sm {
            esm_class: 0x40,
            ..sm(&shift)
        }),
        CommandStatus::ESME_RSUBMITFAIL
    );
}

#[test]
fn sar_tlvs() {
    let with_sar = |tlvs: &[(u16, Vec<u8>)]| {
        let mut s = sm(b"segment");
        for (t, v) in tlvs {
            s.tlvs.push(*t, v.clone());
        }
        s
    };
    let full = [
        (tag::SAR_MSG_REF_NUM, vec![0, 7]),
        (tag::SAR_TOTAL_SEGMENTS, vec![2]),
        (tag::SAR_SEGMENT_SEQNUM, vec![2]),
    ];
    let m = from_submit_sm(&with_sar(&full), &account(), at()).unwrap();
    assert!(m.concat.unwrap().key.ends_with("|sar:7/2"));
    assert_eq!(
        status(with_sar(&full[..2])),
        CommandStatus::ESME_RMISSINGOPTPARAM
    );
    let bad_seq = [
        (tag::SAR_MSG_REF_NUM, vec![0, 7]),
        (tag::SAR_TOTAL_SEGMENTS, vec![2]),
        (tag::SAR_SEGMENT_SEQNUM, vec![3]),
    ];
    assert_eq!(
        status(with_sar(&bad_seq)),
        CommandStatus::ESME_RINVOPTPARAMVAL
    );
    let mut udh_and_sar = with_sar(&full);
    udh_and_sar.esm_class = 0x40;
    assert_eq!(status(udh_and_sar), CommandStatus::ESME_RINVESMCLASS);
}

#[test]
fn data_sm_needs_message_payload() {
    let mut d = DataSm {
        source: Address::new(1, 1, "49151"),
        dest: Address::new(1, 1, "49176"),
        ..DataSm::default()
    };
    assert_eq!(
        from_data_sm(&d, &account(), at()).unwrap_err(),
        CommandStatus::ESME_RMISSINGOPTPARAM
    );
    d.tlvs.push(tag::MESSAGE_PAYLOAD, b"hi".to_vec());
    assert_eq!(from_data_sm(&d, &account(), at()).unwrap().body, b"hi");
}

#[test]
fn submit_multi_lists_refused_destinations() {
    let dests = vec![
        MultiDest::Sme(Address::new(1, 1, "4917600001")),
        MultiDest::Sme(Address::new(1, 1, "not-a-number")),
        MultiDest::DistributionList("friends".into()),
        MultiDest::Sme(Address::new(1, 1, "4917600002")),
    ];
    let (accepted, refused) = from_submit_multi(&sm(b"hi all"), &dests, &account(), at()).unwrap();
    assert_eq!(
        accepted
            .iter()
            .map(|m| m.dest.addr.as_str())
            .collect::<Vec<_>>(),
        ["4917600001", "4917600002"]
    );
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0].1, CommandStatus::ESME_RINVDSTADR);
    assert_eq!(refused[1].1, CommandStatus::ESME_RCNTSUBDL);
    let bad_common = Sm {
        priority_flag: 9,
        ..sm(b"x")
    };
    assert_eq!(
        from_submit_multi(&bad_common, &dests, &account(), at()).unwrap_err(),
        CommandStatus::ESME_RINVPRTFLG
    );
}
