//! Why a listener could not bind, said so that the operator knows which setting to change.
//!
//! The relay binds up to three sockets (the Socket.IO gateway, the QUIC front end, which
//! also carries the node links of a cluster, and the admin listener), several of them on
//! neighbouring default ports: when one is taken (typically a second node started on one
//! host with the defaults), "address in use" alone does not say which flag moves it.

use std::net::SocketAddr;

/// A listener that could not bind its address. The message is one line and names the flag
/// (its environment variable and config-file key follow from it) that sets the address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process (or another listener of this one) holds the address.
    #[error(
        "cannot listen for {what} on {addr}: it is already in use (set {flag} to another address)"
    )]
    InUse {
        what: &'static str,
        addr: SocketAddr,
        flag: &'static str,
    },
    /// Any other refusal (an address not on this host, a privileged port, ...). The OS
    /// error is part of the message, not a `source`, so that a chain printed with `{:#}`
    /// does not repeat it.
    #[error("cannot listen for {what} on {addr}: {reason} (set {flag} to another address)")]
    Other {
        what: &'static str,
        addr: SocketAddr,
        flag: &'static str,
        reason: std::io::Error,
    },
}

/// The listeners, by the flag that sets each one's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    SocketIo,
    Quic,
    Admin,
}

impl Listener {
    /// What the listener serves, as said in the error.
    pub fn what(self) -> &'static str {
        match self {
            Listener::SocketIo => "Socket.IO",
            Listener::Quic => "QUIC",
            Listener::Admin => "the admin listener",
        }
    }

    /// The command-line flag that sets its address.
    pub fn flag(self) -> &'static str {
        match self {
            Listener::SocketIo => "--socketio-listen",
            Listener::Quic => "--quic-listen",
            Listener::Admin => "--admin-listen",
        }
    }

    /// The error for a failed bind of `addr`.
    pub fn error(self, addr: SocketAddr, reason: std::io::Error) -> ListenError {
        let (what, flag) = (self.what(), self.flag());
        if reason.kind() == std::io::ErrorKind::AddrInUse {
            ListenError::InUse { what, addr, flag }
        } else {
            ListenError::Other {
                what,
                addr,
                flag,
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_use_names_the_flag_once() {
        let addr: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let e = Listener::Admin.error(addr, std::io::ErrorKind::AddrInUse.into());
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e)),
            "cannot listen for the admin listener on 127.0.0.1:9002: it is already in use \
             (set --admin-listen to another address)"
        );
    }

    #[test]
    fn another_refusal_keeps_its_reason_without_repeating_it() {
        let addr: SocketAddr = "192.0.2.1:9000".parse().unwrap();
        let reason = std::io::Error::from_raw_os_error(99); // EADDRNOTAVAIL
        let text = reason.to_string();
        let e = Listener::SocketIo.error(addr, reason);
        let line = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(line.matches(&text).count(), 1, "{line}");
        assert!(
            line.ends_with("(set --socketio-listen to another address)"),
            "{line}"
        );
    }
}
