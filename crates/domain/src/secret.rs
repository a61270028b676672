//! Secrets as the API and the job spec name them: what `petri secret set` sends, what `petri
//! secret ls` shows, and how a job asks for one (`secrets:` in its spec). A value never appears in
//! any of these types but the request that sets it, whose `Debug` hides it.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest secret Petri keeps (a value, or a file's bytes).
pub const MAX_SECRET_BYTES: usize = 1 << 20;

/// What a secret holds, and so how a job receives it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// Text (an API key, a password): the job gets it in an environment variable.
    #[default]
    Value,
    /// A file's bytes (`kaggle.json`, a key file): the job gets a private copy and its path in an
    /// environment variable.
    File,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Value => "value",
            SecretKind::File => "file",
        }
    }
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret as listed: everything but its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    pub kind: SecretKind,
    /// The user who set it; only they (or an admin) may replace or remove it, only their jobs
    /// may use it.
    pub owner: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The body of `PUT /api/v1/secrets/{name}`: the value (a file's bytes in base64) and its kind.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The value itself for `value`; the file's bytes in standard base64 for `file`.
    pub value: String,
    /// `value` (the default) or `file`.
    #[serde(default)]
    pub kind: SecretKind,
}

impl std::fmt::Debug for SecretRequest {
    // The value is what this type exists to carry, and what must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRequest")
            .field("value", &"<hidden>")
            .field("kind", &self.kind)
            .finish()
    }
}

/// A secret a job asks for: `HF_TOKEN` (short form) or `{name: kaggle.json, env: KAGGLE_CONFIG}`.
/// A value secret becomes the variable `env` (default: its name); a file secret is written to a
/// private file whose path is in `env` (default: the name upper-cased, other characters than
/// letters and digits as `_`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretUse {
    pub name: String,
    pub env: Option<String>,
}

impl SecretUse {
    pub fn named(name: impl Into<String>) -> SecretUse {
        SecretUse {
            name: name.into(),
            env: None,
        }
    }

    /// The variable the job finds it in, for a secret of `kind`.
    pub fn variable(&self, kind: SecretKind) -> String {
        match (&self.env, kind) {
            (Some(env), _) => env.clone(),
            (None, SecretKind::Value) => self.name.clone(),
            (None, SecretKind::File) => file_variable(&self.name),
        }
    }
}

/// The variable that holds a file secret's path by default: `kaggle.json` → `KAGGLE_JSON`.
pub fn file_variable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A secret's name: 1 to 128 letters, digits, `_`, `-` and `.`, not starting with `.` (so it is
/// also a safe file name: no `..`, no `/`, nothing hidden).
pub fn is_secret_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What a name must look like, for error messages.
pub const SECRET_NAME_RULE: &str =
    "1 to 128 letters, digits, `_`, `-` and `.`, not starting with `.`";

impl Serialize for SecretUse {
    /// The short form when nothing but the name is set, as a person would write it.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.env {
            None => s.serialize_str(&self.name),
            Some(env) => {
                use serde::ser::SerializeStruct;
                let mut st = s.serialize_struct("SecretUse", 2)?;
                st.serialize_field("name", &self.name)?;
                st.serialize_field("env", env)?;
                st.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretUse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretUse, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = SecretUse;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret's name, or {name, env}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretUse, E> {
                Ok(SecretUse::named(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretUse, A::Error> {
                const FIELDS: &[&str] = &["name", "env"];
                let (mut name, mut env) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<String>()?),
                        "env" => env = Some(map.next_value::<String>()?),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                Ok(SecretUse { name, env })
            }
        }
        d.deserialize_any(Either)
    }
}

/// How `secrets:` looks in the OpenAPI document: a name, or `{name, env}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only: SecretUse (de)serializes itself
#[schema(as = SecretUse)]
pub(crate) enum SecretUseSchema {
    /// The secret's name; the variable is chosen by its kind.
    Name(String),
    /// The secret and the variable to put it (or its file's path) in.
    Named {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        env: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_and_the_short_one_is_written_back() {
        let uses: Vec<SecretUse> =
            serde_yaml_ng::from_str("[HF_TOKEN, {name: kaggle.json, env: KAGGLE_CONFIG}]").unwrap();
        assert_eq!(uses[0], SecretUse::named("HF_TOKEN"));
        assert_eq!(uses[1].env.as_deref(), Some("KAGGLE_CONFIG"));
        let json = serde_json::to_string(&uses).unwrap();
        assert_eq!(
            json,
            r#"["HF_TOKEN",{"name":"kaggle.json","env":"KAGGLE_CONFIG"}]"#
        );
        let err = serde_yaml_ng::from_str::<SecretUse>("{name: a, evn: B}").unwrap_err();
        assert!(err.to_string().contains("unknown field `evn`"), "{err}");
        assert!(serde_yaml_ng::from_str::<SecretUse>("{env: B}").is_err());
    }

    #[test]
    fn names_are_safe_file_names() {
        for good in ["HF_TOKEN", "kaggle.json", "a-b.c_d", "x"] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn variables_follow_the_kind() {
        let plain = SecretUse::named("kaggle.json");
        assert_eq!(plain.variable(SecretKind::File), "KAGGLE_JSON");
        assert_eq!(
            SecretUse::named("HF_TOKEN").variable(SecretKind::Value),
            "HF_TOKEN"
        );
        let chosen = SecretUse {
            name: "kaggle.json".into(),
            env: Some("KAGGLE_CONFIG".into()),
        };
        assert_eq!(chosen.variable(SecretKind::File), "KAGGLE_CONFIG");
    }

    #[test]
    fn a_request_never_prints_its_value() {
        let req = SecretRequest {
            value: "hunter2".into(),
            kind: SecretKind::Value,
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}
