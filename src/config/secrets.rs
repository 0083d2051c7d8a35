//! [`Secret`]: a string that never reaches `Debug`, `Display` or an error
//! message.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A secret string. `Debug` and `Display` print `***`; use [`Secret::expose`]
/// where the value is really needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written so a mistyped secret (`password = 12345678`) is
        // rejected without serde's default message quoting the value.
        struct SecretVisitor;

        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }

        const NOT_A_STRING: &str = "expected a string (put the value in quotes)";
        deserializer.deserialize_string(SecretVisitor)
    }
}

/// Tests serialize a full configuration to walk its keys (see
/// src/config/env.rs); the broker itself never writes a secret out.
#[cfg(test)]
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;
    use crate::config::test_support::{argon2_hash, error, parse, BASE};

    #[test]
    fn mistyped_secret_is_not_echoed() {
        let msg = error(&BASE.replace("\"demo1234\"", "87654321"));
        assert!(
            msg.starts_with("test.toml: accounts[0].password: expected a string"),
            "{msg}"
        );
        assert!(!msg.contains("87654321"), "{msg}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let hash = argon2_hash("s3cret");
        let text = format!(
            "{BASE}\n[[accounts]]\nsystem_id = \"hashed\"\npassword_hash = {hash:?}\nupstream = \"sandbox\"\n"
        );
        let settings = parse(&text).expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("demo1234"), "{debug}");
        assert!(!debug.contains(&hash), "{debug}");
        assert!(debug.contains("***"));
        let pretty = format!("{:#?}", settings.accounts[0]);
        assert!(!pretty.contains("demo1234"), "{pretty}");
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "hunter2");
    }
}
