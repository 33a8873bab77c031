//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `$$` for a
//! literal `$`. Defaults may themselves hold variables.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolationError {
    #[error("required variable {name} is missing: {message}")]
    Required { name: String, message: String },
    #[error("invalid interpolation in {text:?}: {reason}")]
    Invalid { text: String, reason: String },
}

/// How deep defaults may nest (`${A:-${B:-${C}}}` is 3): compose files
/// need a few; a file nesting thousands deep would otherwise exhaust the
/// stack.
pub const MAX_NESTING: usize = 16;

/// Replaces every variable in `text`, looking values up with `lookup`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    interpolate_at(text, lookup, 0)
}

fn interpolate_at(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError::Invalid {
            text: clip(text),
            reason: format!("defaults nest more than {MAX_NESTING} deep"),
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = closing_brace(braced).ok_or_else(|| InterpolationError::Invalid {
                text: text.into(),
                reason: "unclosed ${".into(),
            })?;
            out.push_str(&expand(&braced[..end], text, lookup, depth)?);
            rest = &braced[end + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&rest[..len]).unwrap_or_default());
            }
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, allowing nested `${...}` in
/// defaults.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The start of a long text, for an error message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn expand(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_len);
    if name.is_empty() {
        return Err(InterpolationError::Invalid {
            text: whole.into(),
            reason: format!("no variable name in ${{{inner}}}"),
        });
    }
    let value = lookup(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let nested = |s: &str| interpolate_at(s, lookup, depth + 1);
    match op {
        "" => Ok(value.unwrap_or_default()),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                Ok(value.unwrap_or_default())
            } else {
                nested(&op[2..])
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => Ok(v),
            None => nested(&op[1..]),
        },
        _ if op.starts_with(":?") => match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(InterpolationError::Required {
                name: name.into(),
                message: nested(&op[2..])?,
            }),
        },
        _ if op.starts_with('?') => value.ok_or_else(|| InterpolationError::Required {
            name: name.into(),
            message: op[1..].into(),
        }),
        _ => Err(InterpolationError::Invalid {
            text: clip(whole),
            reason: format!("unsupported ${{{}}}", clip(inner)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)], text: &str) -> Result<String, InterpolationError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        interpolate(text, &|name| map.get(name).cloned())
    }

    #[test]
    fn plain_and_braced_variables_are_replaced() {
        assert_eq!(with(&[("A", "1")], "x$A-${A}y").as_deref(), Ok("x1-1y"));
        assert_eq!(with(&[], "x${MISSING}y").as_deref(), Ok("xy"));
    }

    #[test]
    fn defaults_apply_as_compose_defines_them() {
        assert_eq!(with(&[], "${A:-d}").as_deref(), Ok("d"));
        assert_eq!(with(&[("A", "")], "${A:-d}").as_deref(), Ok("d"));
        assert_eq!(with(&[("A", "")], "${A-d}").as_deref(), Ok(""));
        assert_eq!(with(&[], "${A-d}").as_deref(), Ok("d"));
        assert_eq!(with(&[("A", "v")], "${A:-d}").as_deref(), Ok("v"));
    }

    #[test]
    fn defaults_may_hold_variables() {
        assert_eq!(with(&[("B", "b")], "${A:-x${B}y}").as_deref(), Ok("xby"));
    }

    #[test]
    fn a_double_dollar_is_a_literal_dollar() {
        assert_eq!(
            with(&[("A", "1")], "$$A costs $$5").as_deref(),
            Ok("$A costs $5")
        );
    }

    #[test]
    fn required_variables_say_what_is_missing() {
        assert_eq!(
            with(&[], "${TOKEN:?set TOKEN first}"),
            Err(InterpolationError::Required {
                name: "TOKEN".into(),
                message: "set TOKEN first".into()
            })
        );
    }

    #[test]
    fn defaults_nested_beyond_the_bound_are_refused_not_recursed() {
        let nested = |depth: usize| "${A:-".repeat(depth) + "x" + &"}".repeat(depth);
        assert_eq!(with(&[], &nested(MAX_NESTING)).as_deref(), Ok("x"));
        let err = with(&[], &nested(100_000)).unwrap_err().to_string();
        assert!(err.contains("nest more than 16 deep"), "{err}");
        assert!(err.len() < 300, "the error quotes the start only: {err}");
    }

    #[test]
    fn malformed_interpolations_are_errors() {
        assert!(with(&[], "${A").is_err());
        assert!(with(&[], "${}").is_err());
        assert!(with(&[], "${A:x}").is_err());
    }
}
