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

use relay_core::{AuthError, Authenticator, Claims, ClientId, Presented};

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
}

impl Admitted {
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}
