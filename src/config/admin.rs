//! `[admin]`: the operator console and its JSON API, on a port of their own
//! (never the webhook port). Loopback by default; any other address needs
//! `username` and `password_hash` (HTTP Basic).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{invalid, ConfigError, Secret};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub bind: SocketAddr,
    pub username: Option<String>,
    /// An argon2 PHC string from `smpp-broker hash-password`.
    pub password_hash: Option<Secret>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            username: None,
            password_hash: None,
        }
    }
}

impl AdminSettings {
    /// The username and hash HTTP Basic checks, when they are set.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        Some((self.username.as_deref()?, self.password_hash.as_ref()?))
    }

    pub(super) fn validate(&self, http_bind: SocketAddr) -> Result<(), ConfigError> {
        match (&self.username, &self.password_hash) {
            (Some(_), None) => {
                return Err(invalid(
                    "admin.password_hash",
                    "required with admin.username",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "admin.username",
                    "required with admin.password_hash",
                ))
            }
            _ => {}
        }
        if let Some(hash) = &self.password_hash {
            if !hash.expose().starts_with("$argon2") {
                return Err(invalid(
                    "admin.password_hash",
                    "must be an argon2 hash from `smpp-broker hash-password`",
                ));
            }
        }
        if !self.bind.ip().is_loopback() && self.credentials().is_none() {
            return Err(invalid(
                "admin.username",
                format!(
                    "required, with admin.password_hash, when admin.bind ({}) is not a \
                     loopback address: the console can change the broker",
                    self.bind
                ),
            ));
        }
        if self.bind.port() != 0 && self.bind == http_bind {
            return Err(invalid(
                "admin.bind",
                "must differ from http.bind: the console never shares the webhook port",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, with_section};

    #[test]
    fn admin_errors_name_their_key() {
        assert_eq!(
            error(&with_section("[admin]\nbind = \"0.0.0.0:8081\"")),
            "test.toml: admin.username: required, with admin.password_hash, when admin.bind \
             (0.0.0.0:8081) is not a loopback address: the console can change the broker"
        );
        assert_eq!(
            error(&with_section("[admin]\nusername = \"admin\"")),
            "test.toml: admin.password_hash: required with admin.username"
        );
        assert_eq!(
            error(&with_section("[admin]\npassword_hash = \"$argon2id$x\"")),
            "test.toml: admin.username: required with admin.password_hash"
        );
        assert_eq!(
            error(&with_section(
                "[admin]\nusername = \"admin\"\npassword_hash = \"plain\""
            )),
            "test.toml: admin.password_hash: must be an argon2 hash from \
             `smpp-broker hash-password`"
        );
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let ok = format!(
            "[admin]\nbind = \"0.0.0.0:9000\"\nusername = \"admin\"\npassword_hash = \"{hash}\""
        );
        crate::config::test_support::parse(&with_section(&ok)).expect("credentials given");
    }
}
