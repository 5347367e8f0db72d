//! Admission: whether a connecting client may use the clientId it claims, and what it may
//! do. Shared by every front end, so that a check applies whatever the transport.
//!
//! The steps, in [`RelayHandle::admit`](crate::RelayHandle::admit): a well-formed id; the
//! connecting address within its connection limits (before any costly check); then the
//! authenticator, synchronous (tokens) or asynchronous (an HTTP callback, run here, before
//! the connection reaches the core). The result, [`Admitted`], is what
//! [`RelayHandle::connect_admitted`](crate::RelayHandle::connect_admitted) takes: only an
//! admission makes one, so no front end can skip it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use std::sync::Arc;

use relay_core::{Addr, AuthError, Authenticator, Claimed, Claims, ClientId, Presented};

use crate::cluster::ClusterLink;

/// A boxed admission answer.
pub type AdmissionFuture<'a> = Pin<Box<dyn Future<Output = Result<Claims, AuthError>> + Send + 'a>>;

/// An authenticator that needs I/O to decide (an HTTP callback). It must fail closed: any
/// doubt (timeout, unreachable service, unreadable answer) is a refusal.
pub trait AsyncAuthenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, presented: Presented<'a>) -> AdmissionFuture<'a>;
}

/// How a relay admits clients: a synchronous authenticator, or an asynchronous one.
pub(crate) enum Gate {
    Sync(Box<dyn Authenticator>),
    Async(Box<dyn AsyncAuthenticator>),
}

impl Gate {
    pub async fn authenticate(&self, presented: Presented<'_>) -> Result<Claims, AuthError> {
        match self {
            Gate::Sync(auth) => auth.authenticate(&presented),
            Gate::Async(auth) => auth.authenticate(presented).await,
        }
    }

    /// The synchronous path ([`crate::RelayHandle::connect`]); an asynchronous gate
    /// refuses there, since its check cannot run.
    pub fn authenticate_now(&self, presented: Presented<'_>) -> Result<Claims, AuthError> {
        match self {
            Gate::Sync(auth) => auth.authenticate(&presented),
            Gate::Async(_) => Err(AuthError::CallbackUnreachable(
                "this relay admits through an asynchronous check; connect through \
                 RelayHandle::admit"
                    .into(),
            )),
        }
    }
}

/// A client that passed admission: its id, what it may do, and the address it holds a
/// connection slot for. Made only by [`crate::RelayHandle::admit`].
#[derive(Debug)]
pub struct Admitted {
    pub(crate) client: ClientId,
    pub(crate) claims: Claims,
    pub(crate) ip: Option<IpAddr>,
    /// Cluster mode: the clientId's claim in the shared directory, made by `admit`.
    pub(crate) cluster: Option<ClusterClaim>,
}

/// A claim in a cluster's directory that a connection has not taken yet: released if the
/// front end gives up before connecting (a timeout, a refusal), so that no entry outlives
/// its connection attempt.
pub(crate) struct ClusterClaim {
    link: Arc<dyn ClusterLink>,
    client: ClientId,
    addr: Addr,
    claimed: Claimed,
    taken: bool,
}

impl std::fmt::Debug for ClusterClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClaim")
            .field("client", &self.client)
            .field("addr", &self.addr)
            .field("claimed", &self.claimed)
            .finish()
    }
}

impl ClusterClaim {
    pub fn new(link: Arc<dyn ClusterLink>, client: ClientId, addr: Addr, claimed: Claimed) -> Self {
        Self {
            link,
            client,
            addr,
            claimed,
            taken: false,
        }
    }

    /// The claim, now owned by a connection.
    pub fn take(mut self) -> (Addr, Claimed) {
        self.taken = true;
        (self.addr, self.claimed)
    }
}

impl Drop for ClusterClaim {
    fn drop(&mut self) {
        if !self.taken {
            self.link.release(&self.client, self.addr);
        }
    }
}

impl Admitted {
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}
