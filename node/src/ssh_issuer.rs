//! The admin API's `IssueSshCertificate`, on a node: the caller's identity, certified by
//! the cluster's SSH CA (opened from the replicated store, see
//! `portcullis_proxy::ssh::authority`) until the caller's token expires.

use std::sync::Arc;

use portcullis_api::Caller;
use portcullis_api::service::{IssuedSshCertificate, SshIssuer};
use portcullis_proxy::Error as ProxyError;
use portcullis_proxy::identity::Identity;
use portcullis_proxy::ssh::authority::{Authority, unix_now};
use portcullis_proxy::store::Store;
use tonic::Status;

/// An issuer signing with the SSH authority in `store`.
pub fn issuer<S: Store>(store: Arc<S>) -> SshIssuer {
    Arc::new(move |caller: &Caller, public_key: &str| issue(store.as_ref(), caller, public_key))
}

fn issue<S: Store>(store: &S, caller: &Caller, public_key: &str) -> Result<IssuedSshCertificate, Status> {
    let authority = match Authority::open(store) {
        Ok(Some(authority)) => authority,
        Ok(None) => {
            return Err(Status::unavailable(
                "the cluster has no SSH CA yet (it is made once a node holds the quorum lease); retry shortly",
            ));
        }
        Err(e) => return Err(Status::internal(format!("cannot open the cluster's SSH CA: {e}"))),
    };
    let identity = Identity {
        subject: caller.subject.clone(),
        email: caller.email.clone(),
        name: caller.name.clone(),
        groups: caller.groups.clone(),
        issuer: caller.issuer.clone(),
        expires_at: caller.expires_at.unwrap_or(0),
    };
    match authority.issue(public_key, &identity, unix_now()) {
        Ok(issued) => Ok(IssuedSshCertificate {
            certificate: issued.certificate,
            ca_public_key: issued.ca_public_key,
            key_fingerprint: issued.key_fingerprint,
            valid_before: issued.valid_before,
        }),
        Err(ProxyError::CertificateRefused(reason)) => Err(Status::invalid_argument(reason)),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}
