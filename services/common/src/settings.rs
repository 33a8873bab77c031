//! Reading typed settings from environment variables.
//!
//! Every service has one settings struct built through [`Env`]; a bad value
//! names the variable, the value and what was expected. The lookup is a
//! function so tests can feed a map instead of mutating the process
//! environment.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("environment variable {name} is required but not set{hint}")]
    Missing { name: &'static str, hint: String },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A source of variables: the process environment or, in tests, a map.
pub struct Env {
    lookup: Lookup,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed map, for tests.
    pub fn from_map(map: HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// A fixed list of pairs, for tests.
    pub fn pairs(pairs: &[(&str, &str)]) -> Self {
        Self::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The raw value; an empty value counts as unset, as in compose files
    /// where `FOO=` is a common way to say "use the default".
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A parsed value, or `default` when unset.
    pub fn or<T>(&self, name: &'static str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => parse(name, value),
        }
    }

    /// A required value; `hint` says what it is for.
    pub fn required<T>(&self, name: &'static str, hint: &str) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Err(SettingsError::Missing {
                name,
                hint: if hint.is_empty() {
                    String::new()
                } else {
                    format!(" ({hint})")
                },
            }),
            Some(value) => parse(name, value),
        }
    }

    /// A value that must satisfy `check`, which explains a refusal.
    pub fn checked<T>(
        &self,
        name: &'static str,
        default: T,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, SettingsError>
    where
        T: FromStr + Display,
        T::Err: Display,
    {
        let value = self.or(name, default)?;
        check(&value).map_err(|reason| SettingsError::Invalid {
            name,
            value: value.to_string(),
            reason,
        })?;
        Ok(value)
    }
}

fn parse<T>(name: &'static str, value: String) -> Result<T, SettingsError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| SettingsError::Invalid {
            name,
            value,
            reason: e.to_string(),
        })
}

/// A positive number, for `checked`.
pub fn positive<T: PartialOrd + Default>(value: &T) -> Result<(), String> {
    if *value > T::default() {
        Ok(())
    } else {
        Err("must be greater than zero".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::pairs(pairs)
    }

    #[test]
    fn unset_and_empty_values_take_the_default() {
        let e = env(&[("PORT", "")]);
        assert_eq!(e.or("PORT", 8080u16), Ok(8080));
        assert_eq!(e.or("OTHER", 7u16), Ok(7));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_value() {
        let err = env(&[("PORT", "eighty")]).or("PORT", 8080u16).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PORT"), "{text}");
        assert!(text.contains("\"eighty\""), "{text}");
    }

    #[test]
    fn a_missing_required_value_says_what_it_is_for() {
        let err = env(&[])
            .required::<String>("JWT_SECRET", "signs login tokens")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable JWT_SECRET is required but not set (signs login tokens)"
        );
    }

    #[test]
    fn checked_values_are_refused_with_the_reason() {
        let err = env(&[("MAX", "0")])
            .checked("MAX", 5u64, positive)
            .unwrap_err();
        assert!(err.to_string().contains("greater than zero"));
    }
}
