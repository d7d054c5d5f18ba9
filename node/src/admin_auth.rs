//! The admin API's authenticator: the bearer token, verified by the shared OIDC verifier.

use std::sync::Arc;

use portcullis_api::auth::{Authenticator, Caller, bearer_token};
use portcullis_proxy::Error as ProxyError;
use portcullis_proxy::identity::Verifier;
use tonic::Status;
use tonic::metadata::MetadataMap;

pub struct OidcAuthenticator {
    verifier: Arc<Verifier>,
}

impl OidcAuthenticator {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        OidcAuthenticator { verifier }
    }
}

#[tonic::async_trait]
impl Authenticator for OidcAuthenticator {
    async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let token = bearer_token(metadata)?;
        match self.verifier.verify(token).await {
            Ok(identity) => {
                tracing::debug!(subject = %identity.subject, "admin caller authenticated");
                Ok(Caller {
                    subject: identity.subject,
                    groups: identity.groups,
                    email: identity.email,
                    name: identity.name,
                    issuer: identity.issuer,
                    expires_at: Some(identity.expires_at),
                })
            }
            Err(e @ ProxyError::IdentityUnavailable { .. }) => Err(Status::unavailable(e.to_string())),
            Err(e) => {
                // The reason, never the token.
                tracing::info!(reason = %e, "admin call refused");
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }
}

/// Used when a node has no `[identity]`: every call is refused, naming the fix.
pub struct IdentityNotConfigured;

#[tonic::async_trait]
impl Authenticator for IdentityNotConfigured {
    async fn authenticate(&self, _metadata: &MetadataMap) -> Result<Caller, Status> {
        Err(Status::unavailable(
            "this node has no [identity] configured, so it verifies no tokens and refuses every call; add an [identity] section with your OIDC issuer",
        ))
    }
}
