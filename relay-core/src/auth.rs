//! The seam where a deployment decides whether a connection may use the clientId it claims.

use crate::client_id::ClientId;

/// Accepts or refuses a connection's claimed clientId. Called once per connection, before
/// it is registered. The credentials are whatever the transport carried (the native hello's
/// credentials field, or the Socket.IO handshake's `auth` data).
pub trait Authenticator: Send + Sync + 'static {
    /// `Err(reason)` refuses the connection; the reason is shown to the client.
    fn authenticate(&self, client: &ClientId, credentials: Option<&[u8]>) -> Result<(), String>;
}

/// Lets every well-formed clientId in, as the original server did.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: &ClientId, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

/// The checks made before a connection may claim an id: a well-formed clientId that the
/// authenticator accepts. Every driver admits connections through this one function.
pub fn check_claim(
    auth: &dyn Authenticator,
    client_id: Option<&str>,
    credentials: Option<&[u8]>,
) -> Result<ClientId, crate::error::ConnectError> {
    use crate::error::ConnectError;
    let client = ClientId::new(client_id.ok_or(ConnectError::MissingClientId)?)?;
    auth.authenticate(&client, credentials)
        .map_err(|reason| ConnectError::Unauthorized {
            client: client.clone(),
            reason,
        })?;
    Ok(client)
}
