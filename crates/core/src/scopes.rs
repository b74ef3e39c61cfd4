//! Scopes: the built-in catalog with risk levels, and the grammar for issuers' own.
//!
//! Grammar (a subset of RFC 6749 §3.3 scope-token, so OAuth libraries accept it):
//! `verb ":" resource (":" qualifier)*`, each part `[a-z0-9][a-z0-9_.-]*`, lowercase
//! ASCII only, at most 64 characters and 4 parts. Examples: `read:portfolio`,
//! `write:email`, `call:agents:billing`. A scope without `:` is the dotted form
//! AgentOAuth uses (`payments.send`): 2 to 4 `.`-separated parts, each
//! `[a-z0-9][a-z0-9_-]*`.

use serde::Serialize;

/// Longest scope accepted.
pub const MAX_SCOPE_LEN: usize = 64;
/// Most scopes one agent may hold.
pub const MAX_SCOPES: usize = 64;

/// How much harm misuse of a scope can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Read-only, public or low-value data.
    Low,
    /// Personal data, or changes that are easy to undo.
    Medium,
    /// Acts on the user's behalf or touches sensitive data.
    High,
}

/// A catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScopeInfo {
    /// The scope.
    pub scope: &'static str,
    /// Its risk.
    pub risk: Risk,
    /// What it allows.
    pub description: &'static str,
}

/// The built-in catalog (KairosAI's list, plus ImaRobot's examples).
pub const CATALOG: &[ScopeInfo] = &[
    ScopeInfo {
        scope: "read:email",
        risk: Risk::Medium,
        description: "Read email messages",
    },
    ScopeInfo {
        scope: "write:email",
        risk: Risk::High,
        description: "Send emails on behalf of user",
    },
    ScopeInfo {
        scope: "read:calendar",
        risk: Risk::Low,
        description: "Read calendar events",
    },
    ScopeInfo {
        scope: "write:calendar",
        risk: Risk::Medium,
        description: "Create and modify calendar events",
    },
    ScopeInfo {
        scope: "read:files",
        risk: Risk::Medium,
        description: "Read files and documents",
    },
    ScopeInfo {
        scope: "write:files",
        risk: Risk::High,
        description: "Create and edit files",
    },
    ScopeInfo {
        scope: "browse:web",
        risk: Risk::Low,
        description: "Fetch public web pages",
    },
    ScopeInfo {
        scope: "submit:forms",
        risk: Risk::High,
        description: "Submit web forms",
    },
    ScopeInfo {
        scope: "execute:code",
        risk: Risk::High,
        description: "Run code in a sandbox",
    },
    ScopeInfo {
        scope: "read:database",
        risk: Risk::High,
        description: "Query a database",
    },
    ScopeInfo {
        scope: "call:agents",
        risk: Risk::Medium,
        description: "Invoke other AI agents",
    },
    ScopeInfo {
        scope: "read:identity",
        risk: Risk::Low,
        description: "Verify other agents",
    },
    ScopeInfo {
        scope: "read:portfolio",
        risk: Risk::Medium,
        description: "Read portfolio holdings",
    },
    ScopeInfo {
        scope: "read:transactions",
        risk: Risk::Medium,
        description: "Read transaction history",
    },
];

/// Why a scope name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Does not follow the grammar.
    #[error(
        "scope `{0}` is invalid: use lowercase `verb:resource` such as `read:portfolio` ([a-z0-9_.-], 2 to 4 parts, at most 64 characters) or the dotted `resource.verb` such as `payments.send`"
    )]
    Grammar(String),
    /// Too many scopes.
    #[error("too many scopes ({0}); at most 64")]
    TooMany(usize),
    /// No scopes at all.
    #[error("at least one scope is required")]
    Empty,
}

/// The catalog entry for `scope`, if it is built in.
pub fn lookup(scope: &str) -> Option<&'static ScopeInfo> {
    CATALOG.iter().find(|s| s.scope == scope)
}

/// Checks one scope against the grammar.
pub fn validate(scope: &str) -> Result<(), ScopeError> {
    let bad = || ScopeError::Grammar(scope.chars().take(MAX_SCOPE_LEN + 8).collect());
    if scope.is_empty() || scope.len() > MAX_SCOPE_LEN {
        return Err(bad());
    }
    // The colon form, or else the dotted form (whose parts cannot hold a dot).
    let (separator, inner): (char, &[u8]) = if scope.contains(':') {
        (':', b"_.-")
    } else {
        ('.', b"_-")
    };
    let parts: Vec<&str> = scope.split(separator).collect();
    if !(2..=4).contains(&parts.len()) {
        return Err(bad());
    }
    for part in parts {
        let mut bytes = part.bytes();
        match bytes.next() {
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
            _ => return Err(bad()),
        }
        if !bytes.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || inner.contains(&c)) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Checks a scope list: non-empty, bounded, each valid; returns it deduplicated in
/// first-seen order.
pub fn validate_all(scopes: &[String]) -> Result<Vec<String>, ScopeError> {
    if scopes.is_empty() {
        return Err(ScopeError::Empty);
    }
    if scopes.len() > MAX_SCOPES {
        return Err(ScopeError::TooMany(scopes.len()));
    }
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        validate(s)?;
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_entries_follow_the_grammar() {
        for s in CATALOG {
            validate(s.scope).unwrap();
        }
        assert_eq!(lookup("write:email").unwrap().risk, Risk::High);
    }

    #[test]
    fn grammar() {
        for good in [
            "read:portfolio",
            "call:agents:billing",
            "a:b",
            "read:v1.accounts",
            "x-y:z_w",
            // AgentOAuth's dotted form.
            "payments.send",
            "calendar.events.read",
            "a.b.c.d",
        ] {
            validate(good).unwrap();
        }
        for bad in [
            "",
            "read",
            "Read:portfolio",
            "read:",
            ":x",
            "read portfolio",
            "read:port folio",
            "read:a:b:c:d",
            "read:é",
            "read:\"x\"",
            "read:*",
            "payments",
            "payments.",
            ".send",
            "payments..send",
            "a.b.c.d.e",
            "Payments.send",
            "payments.send*",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        assert!(validate(&format!("read:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn lists_are_bounded_and_deduplicated() {
        assert_eq!(validate_all(&[]), Err(ScopeError::Empty));
        let many: Vec<String> = (0..65).map(|i| format!("read:r{i}")).collect();
        assert_eq!(validate_all(&many), Err(ScopeError::TooMany(65)));
        let dup = vec![
            "read:a".to_owned(),
            "read:b".to_owned(),
            "read:a".to_owned(),
        ];
        assert_eq!(validate_all(&dup).unwrap(), vec!["read:a", "read:b"]);
    }
}
