//! `pictor-control-plane`: the reference control plane as a program a person can run.
//!
//! ```text
//! pictor-control-plane --listen 127.0.0.1:8080 --instance demo --token-file ./token
//! curl -X POST localhost:8080/admin/keys -d '{"name":"laptop","public_key":"ssh-ed25519 AAAA..."}' -H 'content-type: application/json'
//! curl -X DELETE localhost:8080/admin/keys/key_0000000002
//! ```
//! The admin interface has no authentication: bind it to loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use pictor_control_plane::ControlPlane;

/// Reference implementation of the Pictor instance API v1.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (loopback: the admin interface is unauthenticated).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Instance id to register (with --token-file).
    #[arg(long)]
    instance: Option<String>,
    /// File holding that instance's token.
    #[arg(long)]
    token_file: Option<PathBuf>,
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
    let addr = cp.serve(args.listen).await?;
    if let Some(path) = &args.address_file {
        std::fs::write(path, addr.to_string())?;
    }
    eprintln!("pictor-control-plane listening on http://{addr} (admin under /admin)");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
