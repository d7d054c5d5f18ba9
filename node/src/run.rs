//! `portcullis run --config FILE`: one node process.
//!
//! Binds every listener first (so a port clash is reported before anything starts),
//! then starts the cluster node, the admin API and the ops port, and runs until
//! SIGTERM or Ctrl-C, then drains gracefully (see [`drain`]).

use std::path::Path;
use std::sync::Arc;

use portcullis_raft::crypto::DataKey;
use portcullis_raft::network::tls::TlsMaterial;
use portcullis_raft::node::{ClusterNode, NodeSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::error::NodeError;

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { what, addr: addr.to_string(), source })
}

/// Environment variable that must say `yes` for `--unsafe-no-lease` to be accepted.
pub const UNSAFE_NO_LEASE_CONFIRM: &str = "PORTCULLIS_I_UNDERSTAND_UNSAFE_NO_LEASE";

pub async fn run(config_path: &Path, unsafe_no_lease: bool) -> Result<(), NodeError> {
    if unsafe_no_lease && std::env::var(UNSAFE_NO_LEASE_CONFIRM).as_deref() != Ok("yes") {
        return Err(NodeError::Config {
            path: config_path.to_path_buf(),
            detail: format!(
                "--unsafe-no-lease keeps serving without quorum and exists only to test the chaos checker; set {UNSAFE_NO_LEASE_CONFIRM}=yes to confirm"
            ),
        });
    }
    if unsafe_no_lease {
        tracing::error!("UNSAFE: serving without the quorum lease (--unsafe-no-lease); this node does not fail closed");
    }
    let config = NodeConfig::load(config_path, std::env::vars())?;
    let tls = TlsMaterial::load(&config.tls)?;
    let data_key = DataKey::load(&config.key_file)?;
    let prometheus = crate::ops::install_prometheus()?;

    let raft_listener = bind("raft", &config.listen.raft).await?;
    let admin_listener = bind("admin", &config.listen.admin).await?;
    let ops_listener = bind("ops", &config.listen.ops).await?;
    let pg_listener = match &config.listen.pg {
        Some(addr) => Some(bind("postgres", addr).await?),
        None => None,
    };
    let http_listener = match &config.listen.http {
        Some(addr) => Some(bind("http", addr).await?),
        None => None,
    };
    let ssh_listener = match &config.listen.ssh {
        Some(addr) => Some(bind("ssh", addr).await?),
        None => None,
    };
    let console_listener = match &config.listen.console {
        Some(addr) => Some(bind("console", addr).await?),
        None => None,
    };

    let shutdown = CancellationToken::new();
    let retention = match config.raft.retention_days {
        0 => None,
        days => Some(std::time::Duration::from_secs(days.saturating_mul(86_400))),
    };
    let settings = NodeSettings {
        id: config.id,
        data_dir: config.data_dir.clone(),
        member: config.member(),
        peers: config.peer_members(),
        tls: tls.clone(),
        data_key,
        timing: config.raft.timing(),
        snapshot_after_entries: config.raft.snapshot_after_entries,
        retention,
        unsafe_no_lease,
    };
    let node = ClusterNode::start(settings, raft_listener, shutdown.child_token()).await?;
    tracing::info!(id = config.id, raft = %config.listen.raft, admin = %config.listen.admin, ops = %config.listen.ops, "node started");

    let verifier = match &config.identity {
        Some(identity) => {
            if identity.is_dev_issuer() {
                tracing::warn!(issuer = %identity.issuer, "trusting the built-in DEVELOPMENT issuer (insecure_dev_issuer = true); never do this in production");
            }
            let verifier = Arc::new(
                portcullis_proxy::identity::Verifier::new(identity.clone())
                    .map_err(|e| NodeError::Config { path: config_path.to_path_buf(), detail: e.to_string() })?,
            );
            // Warm the key cache; until it succeeds every token is refused (fail closed).
            let warm = verifier.clone();
            tokio::spawn(async move {
                if let Err(e) = warm.refresh().await {
                    tracing::warn!(error = %e, "identity provider not reachable yet; will retry on the next token");
                }
            });
            Some(verifier)
        }
        None => {
            tracing::warn!("no [identity] configured: the admin API and the doors refuse everyone");
            None
        }
    };
    let authenticator: Arc<dyn portcullis_api::Authenticator> = match &verifier {
        Some(v) => Arc::new(crate::admin_auth::OidcAuthenticator::new(v.clone())),
        None => Arc::new(crate::admin_auth::IdentityNotConfigured),
    };
    // Shutdown runs in stages (see `drain`): `draining` fails /readyz and closes the
    // doors, `audit_stop` flushes the audit batcher once the doors are done, `shutdown`
    // stops the rest.
    let draining = CancellationToken::new();
    let audit_stop = CancellationToken::new();
    let mut doors = tokio::task::JoinSet::new();
    // One audit batcher, one door store and one gate for every door of this node: they
    // share the policy cache and the bound on audit records in flight.
    let batcher = portcullis_raft::audit_batch::EventBatcher::spawn(node.clone(), 256, audit_stop.clone());
    let store = Arc::new(crate::door_store::NodeStore::new(node.clone(), batcher));
    let gate = Arc::new(portcullis_proxy::gate::Gate::new(store.clone(), config.limits.gate()));
    // The cluster's SSH CA and host key: made by the first node that serves and finds none.
    tokio::spawn(portcullis_proxy::ssh::authority::ensure(store.clone(), shutdown.child_token()));
    if let (Some(listener), Some(verifier)) = (pg_listener, verifier.clone()) {
        let tls = tokio_rustls::TlsAcceptor::from(tls.rustls_server_config()?);
        let settings = config.limits.postgres();
        let door = Arc::new(portcullis_proxy::postgres::PgDoor::new(gate.clone(), verifier, tls, settings));
        doors.spawn(portcullis_proxy::postgres::serve(listener, door, draining.clone()));
    }
    if let (Some(listener), Some(verifier)) = (ssh_listener, verifier.clone()) {
        let door = Arc::new(portcullis_proxy::ssh::SshDoor::new(gate.clone(), verifier, config.limits.ssh()));
        doors.spawn(portcullis_proxy::ssh::serve(listener, door, draining.clone()));
    }
    if let (Some(listener), Some(verifier)) = (http_listener, verifier.clone()) {
        // The node's certificate, offering HTTP/2 and HTTP/1.1.
        let mut server = (*tls.rustls_server_config()?).clone();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let door = Arc::new(portcullis_proxy::http::HttpDoor::new(
            gate.clone(),
            verifier,
            tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            config.limits.http(&config.http),
        ));
        doors.spawn(portcullis_proxy::http::serve(listener, door, draining.clone()));
    }
    let policy_check: portcullis_api::service::PolicyCheck =
        Arc::new(|source| portcullis_proxy::policy::parse(source).map(|doc| doc.name).map_err(|e| e.to_string()));
    let ssh_issuer = crate::ssh_issuer::issuer(store);
    // One admin service: the gRPC API and the web console call the same one, so roles
    // and refusals are the same in both.
    let admin = Arc::new(
        portcullis_api::AdminService::new(node.clone(), authenticator, config.authz.clone(), policy_check)
            .with_ssh_issuer(ssh_issuer),
    );
    let admin_server = tonic::transport::Server::builder()
        .tls_config(tls.server())
        .map_err(|e| NodeError::Server(format!("admin TLS: {e}")))?
        .add_service(portcullis_api::proto::admin_server::AdminServer::from_arc(admin.clone()));
    let console_task = match (console_listener, verifier.clone()) {
        (Some(listener), Some(verifier)) => {
            Some(tokio::spawn(start_console(&config, &tls, listener, admin, verifier, &node, shutdown.clone())?))
        }
        (Some(_), None) => {
            tracing::warn!("listen.console is set but [identity] is not: the console stays off (nobody could sign in)");
            None
        }
        _ => None,
    };
    let admin_stop = shutdown.clone();
    let admin_task = tokio::spawn(async move {
        let incoming = portcullis_raft::network::incoming_nodelay(admin_listener);
        if let Err(e) = admin_server.serve_with_incoming_shutdown(incoming, admin_stop.cancelled()).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    tokio::spawn(crate::ops::upkeep(prometheus.clone(), shutdown.clone()));
    let ops_task =
        tokio::spawn(crate::ops::serve(ops_listener, node.clone(), prometheus, draining.clone(), shutdown.clone()));

    wait_for_signal().await;
    let grace = std::time::Duration::from_secs(config.shutdown.grace_secs);
    drain(&node, grace, &draining, doors, &audit_stop).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = admin_task.await;
        let _ = ops_task.await;
        if let Some(console) = console_task {
            let _ = console.await;
        }
        if let Err(e) = node.shutdown().await {
            tracing::warn!(error = %e, "store not closed cleanly; the next start rebuilds it from the snapshot");
        }
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The web console on `listener` (HTTPS with the node's certificate, HTTP/1.1), calling
/// `admin`; it stops with `shutdown`, after the doors, so approvals can still release
/// held statements while the node drains.
fn start_console(
    config: &NodeConfig,
    tls: &TlsMaterial,
    listener: TcpListener,
    admin: Arc<portcullis_api::AdminService>,
    verifier: Arc<portcullis_proxy::identity::Verifier>,
    node: &ClusterNode,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, NodeError> {
    use crate::console;
    let mut server = (*tls.rustls_server_config()?).clone();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = console::listener::TlsListener::spawn(
        listener,
        acceptor,
        console::listener::HANDSHAKE_TIMEOUT,
        shutdown.clone(),
    )
    .map_err(|e| NodeError::io("console listener", e))?;
    let public_url = config.console_url().unwrap_or_default();
    let identity = verifier.config().clone();
    let oidc =
        console::oidc::OidcClient::new(&identity, &config.console.client_id, &public_url, &config.console.scopes)?
            .with_resource(&config.console.resource);
    tracing::info!(url = %public_url, redirect_uri = %oidc.redirect_uri(), client_id = %config.console.client_id, "web console listening");
    let view_node = node.clone();
    let approver_groups: console::ApproverGroups = Arc::new(move || {
        let policies = view_node.view().policies().unwrap_or_default();
        policies
            .iter()
            .filter_map(|p| portcullis_proxy::policy::parse(&p.source).ok())
            .flat_map(|doc| doc.rules)
            .filter_map(|rule| match rule.action {
                portcullis_proxy::policy::Action::Review { approvers, .. } => Some(approvers.groups),
                _ => None,
            })
            .flatten()
            .collect()
    });
    let deps = console::ConsoleDeps {
        node_id: config.id,
        admin,
        verifier,
        roles: config.authz.clone(),
        approver_groups,
        serving: node.serving(),
        approvals: node.view().notifier().subscribe_approvals(),
        shutdown: shutdown.clone(),
        oidc,
    };
    Ok(console::serve(listener, console::Console::new(deps), shutdown))
}

/// Graceful shutdown, in order: fail /readyz and stop accepting connections (a load
/// balancer drains us); let sessions finish their running statement (idle ones close
/// at once with 57P01) for up to `grace`; then flush the audit batcher. The admin API
/// keeps answering meanwhile, so approvals can still release held statements.
///
/// A leader does not hand over leadership first: openraft 0.9.25 has no leadership
/// transfer (it arrived in 0.10), and a follower's campaign is refused while the
/// leader's lease runs. When the leader stops, the followers elect a new one after
/// that lease (see `election`): about 1.4 s in BENCHMARKS.md.
async fn drain(
    node: &ClusterNode,
    grace: std::time::Duration,
    draining: &CancellationToken,
    mut doors: tokio::task::JoinSet<()>,
    audit_stop: &CancellationToken,
) {
    let was_leader = node.local_status().role == "leader";
    tracing::info!(grace_secs = grace.as_secs(), was_leader, "SIGTERM: draining (readyz 503, no new connections)");
    draining.cancel();
    let started = std::time::Instant::now();
    let drained = tokio::time::timeout(grace, async { while doors.join_next().await.is_some() {} }).await.is_ok();
    if drained {
        tracing::info!(ms = started.elapsed().as_millis() as u64, "sessions ended and their audit is committed");
    } else {
        tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing the remaining sessions");
        doors.abort_all();
    }
    audit_stop.cancel();
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
