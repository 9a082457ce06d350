//! Path patterns of mock routes: `/api/items/{id}`, `/files/{rest*}`, `/static/*`.
//!
//! A pattern is split at `/` into segments: a literal segment matches itself, `{name}` matches
//! any one non-empty segment, and a last segment `{name*}` (or an anonymous `*`) matches the
//! rest of the path, zero or more segments. The query string is not part of the match.
//! Parameters are returned as slices of the request path, not percent-decoded.

/// Most parameters one pattern may have.
pub const MAX_PARAMS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    Param,
    /// The rest of the path (always last).
    Rest,
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segs: Vec<Seg>,
    /// Names of the `{name}` and `{name*}` segments, in order (an anonymous `*` has none).
    names: Vec<String>,
    /// Whether the last segment is a catch-all that captures a parameter.
    rest_named: bool,
}

impl Pattern {
    /// Parses `text`; an error gives the byte offset in `text` and what is wrong.
    pub fn parse(text: &str) -> Result<Pattern, (usize, String)> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err((
                0,
                format!(
                    "a path pattern starts with \"/\", as in \"/api/items/{{id}}\" (got {text:?})"
                ),
            ));
        };
        if text.contains('?') {
            let at = text.find('?').unwrap_or(0);
            return Err((
                at,
                "a path pattern has no query string: query parameters are read with {{query.NAME}}"
                    .into(),
            ));
        }
        let mut segs = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut rest_named = false;
        let mut offset = 1;
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let seg = if *part == "*" {
                if !last {
                    return Err((
                        offset,
                        "\"*\" (the rest of the path) must be the last segment".into(),
                    ));
                }
                Seg::Rest
            } else if let Some(inner) = part.strip_prefix('{') {
                let Some(inner) = inner.strip_suffix('}') else {
                    return Err((
                        offset,
                        format!("segment {part:?}: a parameter is a whole segment, \"{{name}}\""),
                    ));
                };
                let (name, is_rest) = match inner.strip_suffix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err((
                        offset,
                        format!(
                            "parameter name {name:?}: use letters, digits, '_' or '-', as in {{id}}"
                        ),
                    ));
                }
                if names.iter().any(|n| n == name) {
                    return Err((offset, format!("parameter {{{name}}} appears twice")));
                }
                if is_rest && !last {
                    return Err((
                        offset,
                        format!("{{{name}*}} (the rest of the path) must be the last segment"),
                    ));
                }
                names.push(name.to_owned());
                if names.len() > MAX_PARAMS {
                    return Err((offset, format!("at most {MAX_PARAMS} parameters per path")));
                }
                if is_rest {
                    rest_named = true;
                    Seg::Rest
                } else {
                    Seg::Param
                }
            } else if part.contains(['{', '}']) {
                return Err((
                    offset,
                    format!("segment {part:?}: a parameter is a whole segment, \"{{name}}\""),
                ));
            } else {
                Seg::Lit((*part).into())
            };
            segs.push(seg);
            offset += part.len() + 1;
        }
        Ok(Pattern {
            segs,
            names,
            rest_named,
        })
    }

    /// The parameter names, in the order [`Pattern::matches`] fills them in.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `path` (without query) matches; fills `params` with the parameters' values in
    /// the order of [`Pattern::names`].
    pub fn matches<'p>(&self, path: &'p str, params: &mut [&'p str; MAX_PARAMS]) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut n = 0;
        let count = self.segs.len();
        for (i, seg) in self.segs.iter().enumerate() {
            if *seg == Seg::Rest {
                if self.rest_named {
                    params[n] = rest;
                }
                return true;
            }
            let (part, next) = match rest.split_once('/') {
                Some((part, next)) => (part, Some(next)),
                None => (rest, None),
            };
            match seg {
                Seg::Lit(lit) if **lit == *part => {}
                Seg::Param if !part.is_empty() => {
                    params[n] = part;
                    n += 1;
                }
                _ => return false,
            }
            match next {
                Some(next) => rest = next,
                // The path ended: a match only if the pattern ends here too (or continues
                // with a catch-all, which matches nothing).
                None => {
                    return i + 1 == count
                        || (i + 2 == count && self.segs[i + 1] == Seg::Rest && {
                            if self.rest_named {
                                params[n] = "";
                            }
                            true
                        });
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
        let p = Pattern::parse(pattern).expect("pattern");
        let mut params = [""; MAX_PARAMS];
        p.matches(path, &mut params)
            .then(|| params[..p.names().len()].to_vec())
    }

    #[test]
    fn literals_and_params() {
        assert_eq!(matched("/", "/"), Some(vec![]));
        assert_eq!(matched("/", "/x"), None);
        assert_eq!(matched("/api/products", "/api/products"), Some(vec![]));
        assert_eq!(matched("/api/products", "/api/products/"), None);
        assert_eq!(matched("/api/products", "/api/product"), None);
        assert_eq!(matched("/api/products", "/api"), None);
        assert_eq!(
            matched("/api/sessions/{id}/join", "/api/sessions/s-7/join"),
            Some(vec!["s-7"])
        );
        assert_eq!(
            matched("/api/sessions/{id}/join", "/api/sessions//join"),
            None
        );
        assert_eq!(
            matched("/api/sessions/{id}", "/api/sessions/s-7/join"),
            None
        );
        assert_eq!(
            matched("/a/{x}/b/{y}", "/a/1/b/two"),
            Some(vec!["1", "two"])
        );
    }

    #[test]
    fn catch_all() {
        assert_eq!(
            matched("/files/{rest*}", "/files/a/b/c"),
            Some(vec!["a/b/c"])
        );
        assert_eq!(matched("/files/{rest*}", "/files/"), Some(vec![""]));
        assert_eq!(matched("/files/{rest*}", "/files"), Some(vec![""]));
        assert_eq!(matched("/files/{rest*}", "/filesx"), None);
        assert_eq!(matched("/*", "/anything/at/all"), Some(vec![]));
        assert_eq!(matched("/*", "/"), Some(vec![]));
        assert_eq!(matched("/static/*", "/static/app.js"), Some(vec![]));
    }

    #[test]
    fn bad_patterns_say_where() {
        let (at, msg) = Pattern::parse("api/x").unwrap_err();
        assert_eq!(at, 0);
        assert!(msg.contains("starts with \"/\""), "{msg}");
        let (at, msg) = Pattern::parse("/a/session-{id}").unwrap_err();
        assert_eq!(at, 3);
        assert!(msg.contains("whole segment"), "{msg}");
        let (_, msg) = Pattern::parse("/a/{rest*}/b").unwrap_err();
        assert!(msg.contains("last segment"), "{msg}");
        let (_, msg) = Pattern::parse("/a/{x}/{x}").unwrap_err();
        assert!(msg.contains("twice"), "{msg}");
        let (_, msg) = Pattern::parse("/a?b=1").unwrap_err();
        assert!(msg.contains("query"), "{msg}");
        let (_, msg) = Pattern::parse("/a/{}").unwrap_err();
        assert!(msg.contains("parameter name"), "{msg}");
    }
}
