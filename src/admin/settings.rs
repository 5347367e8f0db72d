//! Where the admin listener listens, and the token that guards it beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct AdminSettings {
    /// Address of the admin listener (HTTP): /metrics, /healthz, /readyz and the control
    /// center page at /. Port 0 picks a free port. On an address other than loopback it
    /// requires an admin token.
    #[arg(long, env = "P2P_RELAY_ADMIN_LISTEN", default_value = "127.0.0.1:9002")]
    pub admin_listen: SocketAddr,

    /// File holding the admin token (its first line). Required when --admin-listen is not
    /// a loopback address; requests then need 'Authorization: Bearer TOKEN' (or HTTP Basic
    /// with the token as password). /healthz and /readyz stay open for probes.
    #[arg(long, env = "P2P_RELAY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// The admin token itself, instead of --admin-token-file (prefer the file or the
    /// environment: a command line is visible to every user of the machine).
    #[arg(
        long,
        env = "P2P_RELAY_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    pub admin_token: Option<String>,

    /// Host names, besides loopback ones (localhost, *.localhost, 127.x.x.x, [::1]), that
    /// requests to an admin listener without a token may name in their Host header, e.g.
    /// the name of an SSH tunnel's end. Any other Host is refused, so that a web page
    /// cannot reach the listener through DNS rebinding. Not needed with a token.
    #[arg(
        long,
        env = "P2P_RELAY_ADMIN_HOSTS",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    pub admin_hosts: Vec<String>,
}
