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
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use relay_core::auth::unix_seconds;
use relay_core::{
    check_client_id, Addr, AuthError, Authenticator, Claimed, Claims, ClientId, ConnId,
    ConnectError, Presented, Transport,
};
use tracing::debug;

use crate::cluster::ClusterLink;
use crate::sink::Sink;
use crate::RelayHandle;

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

impl RelayHandle {
    /// Admission of a client that claims `client_id`, from `remote` when the front end
    /// knows it: a well-formed id, the address within its connection limits, and the
    /// authenticator's consent, asynchronous or not. Connect the result with
    /// [`RelayHandle::connect_admitted`].
    pub async fn admit(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        remote: Option<SocketAddr>,
        transport: Transport,
    ) -> Result<Admitted, ConnectError> {
        let admitted = async {
            let (client, ip) = self.knock(client_id, remote)?;
            let presented = presented(&client, credentials, remote, transport);
            let claims = self.node.auth.authenticate(presented).await;
            let mut admitted = self.admitted(client, ip, claims)?;
            if let Some(link) = self.node.cluster.get() {
                // The claim is a round trip to the shared directory: made here, in the
                // front end's task, so that connecting stays synchronous in the core.
                let addr = self.node.reserve();
                let config = &self.node.config;
                let claimed = link
                    .claim(
                        &admitted.client,
                        addr,
                        config.duplicate_policy,
                        config.max_clients,
                    )
                    .await?;
                admitted.cluster = Some(ClusterClaim::new(
                    link.clone(),
                    admitted.client.clone(),
                    addr,
                    claimed,
                ));
            }
            Ok(admitted)
        }
        .await;
        if let Err(e) = &admitted {
            self.node.metrics.refused(e);
        }
        admitted
    }

    /// [`RelayHandle::admit`] and [`RelayHandle::connect_admitted`] in one call, for a
    /// relay whose authenticator is synchronous (with an asynchronous one it refuses).
    pub fn connect(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        transport: Transport,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        let admitted = self.knock(client_id, None).and_then(|(client, ip)| {
            let presented = presented(&client, credentials, None, transport);
            let claims = self.node.auth.authenticate_now(presented);
            self.admitted(client, ip, claims)
        });
        match admitted {
            Ok(admitted) => self.connect_admitted(admitted, transport, sink),
            Err(e) => {
                self.node.metrics.refused(&e);
                Err(e)
            }
        }
    }

    fn knock(
        &self,
        client_id: Option<&str>,
        remote: Option<SocketAddr>,
    ) -> Result<(ClientId, Option<std::net::IpAddr>), ConnectError> {
        let client = check_client_id(client_id)?;
        let ip = remote.map(|r| r.ip());
        if let Some(ip) = ip {
            self.node.ips().knock(Instant::now(), ip)?;
        }
        Ok((client, ip))
    }

    fn admitted(
        &self,
        client: ClientId,
        ip: Option<std::net::IpAddr>,
        claims: Result<relay_core::Claims, relay_core::AuthError>,
    ) -> Result<Admitted, ConnectError> {
        match claims {
            Ok(claims) => Ok(Admitted {
                client,
                claims,
                ip,
                cluster: None,
            }),
            Err(reason) => {
                debug!(%client, %reason, "refused");
                Err(ConnectError::Unauthorized { client, reason })
            }
        }
    }
}

fn presented<'a>(
    client: &'a ClientId,
    credentials: Option<&'a [u8]>,
    remote: Option<SocketAddr>,
    transport: Transport,
) -> Presented<'a> {
    Presented {
        client,
        credentials,
        remote,
        transport,
        unix_time: unix_seconds(SystemTime::now()),
    }
}
