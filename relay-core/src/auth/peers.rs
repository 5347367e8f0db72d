//! The `peers` claim: which clients an admitted client may pair with.

use std::fmt;

use crate::client_id::ClientId;

/// One entry of a `peers` claim: an exact clientId, or a prefix (written with a trailing
/// `*`) that every clientId starting with it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPattern {
    Exact(String),
    Prefix(String),
}

impl PeerPattern {
    pub fn parse(raw: &str) -> Self {
        match raw.strip_suffix('*') {
            Some(prefix) => PeerPattern::Prefix(prefix.to_owned()),
            None => PeerPattern::Exact(raw.to_owned()),
        }
    }

    pub fn matches(&self, client: &str) -> bool {
        match self {
            PeerPattern::Exact(id) => id == client,
            PeerPattern::Prefix(prefix) => client.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for PeerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerPattern::Exact(id) => f.write_str(id),
            PeerPattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Who a client may pair with. A client without a `peers` claim may pair with anyone; with
/// one, only with the clients it names, whichever side asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Peers {
    #[default]
    Any,
    Only(Vec<PeerPattern>),
}

impl Peers {
    /// The rule of a claim's entries (`["B", "team-*"]`).
    pub fn only<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Self {
        Peers::Only(
            entries
                .into_iter()
                .map(|e| PeerPattern::parse(e.as_ref()))
                .collect(),
        )
    }

    pub fn allows(&self, client: &ClientId) -> bool {
        match self {
            Peers::Any => true,
            Peers::Only(patterns) => patterns.iter().any(|p| p.matches(client.as_str())),
        }
    }

    /// The claim's entries as they are written (None when unrestricted).
    pub fn entries(&self) -> Option<Vec<String>> {
        match self {
            Peers::Any => None,
            Peers::Only(patterns) => Some(patterns.iter().map(|p| p.to_string()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    #[test]
    fn exact_ids_and_prefixes() {
        let rule = Peers::only(["B", "team-*"]);
        assert!(rule.allows(&id("B")));
        assert!(!rule.allows(&id("BB")));
        assert!(rule.allows(&id("team-")));
        assert!(rule.allows(&id("team-7")));
        assert!(!rule.allows(&id("tea")));
        assert!(Peers::Any.allows(&id("anyone")));
        assert!(!Peers::only(Vec::<String>::new()).allows(&id("B")));
        assert!(Peers::only(["*"]).allows(&id("x")));
        assert_eq!(rule.entries().unwrap(), vec!["B", "team-*"]);
    }
}
