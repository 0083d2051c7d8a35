//! `SMPP_BROKER__SECTION__KEY` environment variables, applied to the parsed
//! TOML tree before it is deserialized: `SMPP_BROKER__ACCOUNTS__0__PASSWORD`
//! sets `accounts[0].password`.

use serde::Deserialize;

use super::ConfigError;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SMPP_BROKER__";

/// Keys whose values are strings in the schema: an environment override for
/// them is kept verbatim, so `PASSWORD=12345678` stays a string instead of
/// becoming a TOML integer (which would then fail to deserialize).
const STRING_KEYS: &[&str] = &[
    "bind",
    "system_id",
    "password",
    "password_hash",
    "upstream",
    "name",
    "kind",
    "path",
    "cert",
    "key",
    "public_url",
    "format",
    "level",
    "session_init_timeout",
    "enquire_link_interval",
    "response_timeout",
    "inactivity_timeout",
    "shutdown_timeout",
    "failed_bind_delay",
    "failed_bind_delay_max",
    "default_validity",
    "assembly_timeout",
    "undelivered_retention",
    "final_retention",
    "default_alphabet",
    "long_incoming",
    "busy_timeout",
    "header_read_timeout",
    "body_read_timeout",
    "idle_timeout",
    "mode",
    "base_url",
    "username",
    "device_id",
    "signing_key",
    "request_timeout",
    "pause_cooldown",
    "check_after",
    "check_interval",
    "inbox_interval",
    "sent_after",
    "delivered_after",
    "limits_timezone",
    "prefix",
    "url",
    "node_id",
    "heartbeat",
];

/// Apply the overrides among `env` (name, value pairs; names without the
/// `SMPP_BROKER__` prefix are ignored) to the parsed tree.
pub(super) fn apply_overrides(
    tree: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    // Sorted so that `..__TLS` is applied before `..__TLS__CERT`,
    // whatever order the environment lists them in.
    overrides.sort();
    for (name, value) in &overrides {
        apply_override(tree, name, value)?;
    }
    Ok(())
}

/// The process environment, keeping only our variables' values as UTF-8.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        // Other programs' variables may be anything; only ours must be UTF-8.
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "value is not valid UTF-8".to_owned(),
        })?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

/// Apply one `SMPP_BROKER__A__B__C=value` override to the parsed tree,
/// creating missing tables; array elements must already exist.
/// Values are never included in error messages: they may be secrets.
fn apply_override(tree: &mut toml::Value, var: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let segments: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_lowercase)
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err(env_err(
            "empty key segment (segments are separated by exactly two underscores)".to_owned(),
        ));
    }
    let Some((last, parents)) = segments.split_last() else {
        return Err(env_err("no key after the prefix".to_owned()));
    };

    // The key path walked so far, spelled as in other error messages.
    let mut path = String::new();
    let mut node = tree;
    for (depth, segment) in parents.iter().enumerate() {
        node = match node {
            toml::Value::Table(table) => {
                if !table.contains_key(segment) {
                    // `ACCOUNTS__0__...` with no `accounts`: an array cannot
                    // be conjured from nothing, and a table would be wrong.
                    if let Ok(index) = segments[depth + 1].parse::<usize>() {
                        return Err(env_err(format!(
                            "{} has no element {index}",
                            child_path(&path, segment)
                        )));
                    }
                }
                table
                    .entry(segment.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(array) => element(array, segment, &path).map_err(env_err)?,
            _ => return Err(env_err(format!("{path} is not a table"))),
        };
        path = child_path(&path, segment);
    }

    let value = parse_override_value(last, raw);
    match node {
        toml::Value::Table(table) => {
            table.insert(last.clone(), value);
        }
        toml::Value::Array(array) => {
            *element(array, last, &path).map_err(env_err)? = value;
        }
        _ => return Err(env_err(format!("{path} is not a table"))),
    }
    Ok(())
}

/// `accounts` + `0` -> `accounts[0]`; `smpp` + `tls` -> `smpp.tls`.
fn child_path(path: &str, segment: &str) -> String {
    if segment.parse::<usize>().is_ok() {
        format!("{path}[{segment}]")
    } else if path.is_empty() {
        segment.to_owned()
    } else {
        format!("{path}.{segment}")
    }
}

fn element<'a>(
    array: &'a mut [toml::Value],
    segment: &str,
    path: &str,
) -> Result<&'a mut toml::Value, String> {
    let index: usize = segment
        .parse()
        .map_err(|_| format!("{path} is an array: expected an index, got {segment:?}"))?;
    array
        .get_mut(index)
        .ok_or_else(|| format!("{path} has no element {index}"))
}

/// A TOML value (`42`, `true`, `["receiver"]`) when `raw` parses as one,
/// else the raw string; string-typed keys always keep the raw string.
fn parse_override_value(key: &str, raw: &str) -> toml::Value {
    if !STRING_KEYS.contains(&key) {
        if let Ok(value) = toml::Value::deserialize(toml::de::ValueDeserializer::new(raw)) {
            return value;
        }
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::STRING_KEYS;
    use crate::config::test_support::{
        error_env, every_key_set, parse_env, smsgate, with_section, BASE,
    };
    use crate::config::SmppSettings;
    use crate::smpp::pdu::BindKind;

    #[test]
    fn env_overrides_nested_keys() {
        let s = parse_env(
            BASE,
            &[
                ("SMPP_BROKER__SMPP__BIND", "127.0.0.1:0"),
                ("SMPP_BROKER__STORE__PATH", "/tmp/x.db"),
                // Key segments are case-insensitive.
                ("SMPP_BROKER__Log__Level", "debug"),
                ("SMPP_BROKER__SMPP__RESPONSE_TIMEOUT", "2s"),
            ],
        )
        .expect("overrides");
        assert_eq!(s.smpp.bind, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(s.store.path, Some(PathBuf::from("/tmp/x.db")));
        assert_eq!(s.log.level, "debug");
        assert_eq!(s.smpp.response_timeout, Duration::from_secs(2));
    }

    #[test]
    fn the_store_url_comes_from_the_environment_and_stays_masked() {
        let s = parse_env(
            BASE,
            &[(
                "SMPP_BROKER__STORE__URL",
                "postgres://broker:s3cret@db:5432/smpp",
            )],
        )
        .expect("override");
        let url = s.store.url.as_ref().expect("url");
        assert_eq!(url.expose(), "postgres://broker:s3cret@db:5432/smpp");
        assert!(!format!("{:?}", s.store).contains("s3cret"));
        assert_eq!(
            crate::store::Store::describe(&s.store),
            format!(
                "PostgreSQL postgres://broker:****@db:5432/smpp as node {}",
                s.store.node_id()
            )
        );
    }

    #[test]
    fn env_overrides_create_tls_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "cert").expect("write");
        std::fs::write(&key, "key").expect("write");
        let cert_s = cert.display().to_string();
        let key_s = key.display().to_string();
        let s = parse_env(
            BASE,
            &[
                // Listed key first: application order must not depend on it.
                ("SMPP_BROKER__SMPP__TLS__KEY", key_s.as_str()),
                ("SMPP_BROKER__SMPP__TLS__CERT", cert_s.as_str()),
                ("SMPP_BROKER__SMPP__TLS__BIND", "127.0.0.1:3776"),
            ],
        )
        .expect("tls overrides");
        let tls = s.smpp.tls.expect("tls set");
        assert_eq!(tls.cert, cert);
        assert_eq!(tls.key, key);
        assert_eq!(tls.bind, "127.0.0.1:3776".parse().expect("addr"));
    }

    #[test]
    fn env_overrides_array_element() {
        let s =
            parse_env(BASE, &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "secret")]).expect("override");
        let password = s.accounts[0].password.as_ref().expect("password");
        assert_eq!(password.expose(), "secret");

        // A digits-only password is a string key: it must not become an integer.
        let s = parse_env(BASE, &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "12345678")])
            .expect("numeric password");
        let password = s.accounts[0].password.as_ref().expect("password");
        assert_eq!(password.expose(), "12345678");
    }

    #[test]
    fn env_overrides_are_parsed_as_toml_values() {
        let s = parse_env(
            BASE,
            &[
                ("SMPP_BROKER__ACCOUNTS__0__MAX_SESSIONS", "8"),
                ("SMPP_BROKER__ACCOUNTS__0__BIND_TYPES", r#"["receiver"]"#),
                ("SMPP_BROKER__ACCOUNTS__0__THROUGHPUT", "50"),
                ("SMPP_BROKER__SMPP__DATA_SM_IN_RX", "true"),
                ("SMPP_BROKER__SMPP__MAX_PDU_SIZE", "2048"),
            ],
        )
        .expect("typed overrides");
        let account = &s.accounts[0];
        assert_eq!(account.max_sessions, 8);
        assert_eq!(account.bind_types, vec![BindKind::Receiver]);
        assert_eq!(account.throughput, 50.0);
        assert!(s.smpp.data_sm_in_rx);
        assert_eq!(s.smpp.max_pdu_size, 2048);
        assert!(account.allows(BindKind::Receiver));
        assert!(!account.allows(BindKind::Transmitter));
        assert!(!account.allows(BindKind::Transceiver));
    }

    #[test]
    fn env_ignores_other_variables() {
        let s = parse_env(
            BASE,
            &[
                ("PATH", "/usr/bin"),
                ("SMPP_BROKER_CONFIG", "/etc/x.toml"),
                ("smpp_broker__smpp__bind", "nonsense"),
            ],
        )
        .expect("ignored");
        assert_eq!(s.smpp.bind, SmppSettings::default().bind);
    }

    #[test]
    fn env_errors_name_the_variable() {
        assert_eq!(
            error_env(BASE, &[("SMPP_BROKER__ACCOUNTS__5__PASSWORD", "secret")]),
            "env SMPP_BROKER__ACCOUNTS__5__PASSWORD: accounts has no element 5"
        );
        assert_eq!(
            error_env("", &[("SMPP_BROKER__ACCOUNTS__0__PASSWORD", "secret")]),
            "env SMPP_BROKER__ACCOUNTS__0__PASSWORD: accounts has no element 0"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__ACCOUNTS__X__PASSWORD", "secret")]);
        assert!(
            msg.starts_with("env SMPP_BROKER__ACCOUNTS__X__PASSWORD: accounts is an array"),
            "{msg}"
        );
        let msg = error_env(
            &with_section("[smpp]\nbind = \"0.0.0.0:1\""),
            &[("SMPP_BROKER__SMPP__BIND__PORT", "1")],
        );
        assert_eq!(
            msg,
            "env SMPP_BROKER__SMPP__BIND__PORT: smpp.bind is not a table"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__SMPP____BIND", "1")]);
        assert!(
            msg.starts_with("env SMPP_BROKER__SMPP____BIND: empty key segment"),
            "{msg}"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__", "1")]);
        assert!(msg.starts_with("env SMPP_BROKER__: "), "{msg}");
        // The value itself is never echoed.
        assert!(!msg.contains("secret"));
    }

    #[test]
    fn env_value_errors_name_the_key() {
        assert_eq!(
            error_env(BASE, &[("SMPP_BROKER__SMPP__BIND", "not-an-address")]),
            "test.toml: smpp.bind: invalid socket address syntax"
        );
        let msg = error_env(BASE, &[("SMPP_BROKER__SMPP__NOPE", "1")]);
        assert!(
            msg.starts_with("test.toml: smpp.nope: unknown field `nope`"),
            "{msg}"
        );
    }

    #[test]
    fn smsgate_secrets_can_come_from_the_environment() {
        let settings = parse_env(
            &smsgate("username = \"u\""),
            &[("SMPP_BROKER__UPSTREAMS__0__PASSWORD", "12345678")],
        )
        .unwrap();
        assert_eq!(
            settings.upstreams[0].password.as_ref().unwrap().expose(),
            "12345678"
        );
    }

    /// Sorts the leaf keys of `table` (and of the tables below it) by whether
    /// their values are strings: TOML strings are also what durations, paths,
    /// addresses and enum variants become.
    fn sort_leaves(
        table: &toml::Table,
        strings: &mut BTreeSet<String>,
        others: &mut BTreeSet<String>,
    ) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => sort_leaves(inner, strings, others),
                toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                    for item in items.iter().filter_map(toml::Value::as_table) {
                        sort_leaves(item, strings, others);
                    }
                }
                toml::Value::String(_) => {
                    strings.insert(key.clone());
                }
                // Numbers, booleans and arrays: an override spells them as TOML.
                _ => {
                    others.insert(key.clone());
                }
            }
        }
    }

    /// STRING_KEYS is kept by hand; this derives the real set from the
    /// settings structs (every key set, see `every_key_set`) and compares.
    #[test]
    fn string_keys_are_exactly_the_keys_with_string_values() {
        let tree = toml::Table::try_from(every_key_set()).expect("serializes");
        let (mut strings, mut others) = (BTreeSet::new(), BTreeSet::new());
        sort_leaves(&tree, &mut strings, &mut others);
        let listed: BTreeSet<String> = STRING_KEYS.iter().map(|k| k.to_string()).collect();

        let missing: Vec<_> = strings.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "string-valued keys missing from STRING_KEYS (an override would turn \
             a value like 12345678 into a number): {missing:?}"
        );
        let stale: Vec<_> = listed.difference(&strings).collect();
        assert!(
            stale.is_empty(),
            "STRING_KEYS names no string key: {stale:?}"
        );
        // Overrides look keys up by their last segment alone.
        let ambiguous: Vec<_> = strings.intersection(&others).collect();
        assert!(
            ambiguous.is_empty(),
            "a string in one section and not in another: {ambiguous:?}"
        );
        assert_eq!(STRING_KEYS.len(), listed.len(), "STRING_KEYS repeats a key");
    }
}
