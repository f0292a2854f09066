//! `pictor-control-plane`: the reference control plane as a program a person can run.
//!
//! ```text
//! pictor-control-plane --listen 127.0.0.1:8080 --instance demo --token-file ./token \
//!     --admin-token-file ./admin-token
//! curl -X POST localhost:8080/admin/keys -H "Authorization: Bearer $(cat admin-token)" \
//!     -H 'content-type: application/json' -d '{"name":"laptop","public_key":"ssh-ed25519 AAAA..."}'
//! curl -X DELETE localhost:8080/admin/keys/KEY_ID -H "Authorization: Bearer $(cat admin-token)"
//! ```
//! Every `/admin` call needs the admin token (without `--admin-token-file` one is made at
//! random and printed at start), and the admin API and the account page answer only to
//! the listen address, `localhost` on a loopback listener, and `--allow-host` names: a
//! web page the operator's browser opens can neither forge admin calls nor reach them
//! through a DNS name rebound to this address (`docs/api.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use pictor_control_plane::ControlPlane;

/// Reference implementation of the Pictor instance API v1.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (loopback is best: this is a server for tests and demos).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Instance id to register (with --token-file).
    #[arg(long)]
    instance: Option<String>,
    /// File holding that instance's token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// File holding the admin token (at least 16 printable characters), sent as
    /// `Authorization: Bearer TOKEN` on every /admin call. Without it one is made at
    /// random and printed at start.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Another host name (or IP address, `[v6]` in brackets) browsers and admins may
    /// reach the account page and the admin API by; repeat for more. The listen address,
    /// and `localhost` on a loopback listener, are always allowed.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// Write the bound address (useful with port 0) to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cp = ControlPlane::new();
    if let (Some(instance), Some(token_file)) = (&args.instance, &args.token_file) {
        let token = std::fs::read_to_string(token_file)?;
        cp.register_instance(instance, token.trim());
    }
    if let Some(path) = &args.admin_token_file {
        let token = std::fs::read_to_string(path)?;
        cp.set_admin_token(token.trim())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for name in &args.allow_hosts {
        cp.allow_host(name)
            .map_err(|e| format!("--allow-host {name:?}: {e}"))?;
    }
    let addr = cp.serve(args.listen).await?;
    if let Some(path) = &args.address_file {
        std::fs::write(path, addr.to_string())?;
    }
    eprintln!("pictor-control-plane listening on http://{addr} (admin under /admin)");
    if args.admin_token_file.is_none() {
        eprintln!(
            "admin token (send `Authorization: Bearer TOKEN` on /admin calls): {}",
            cp.admin_token()
        );
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
