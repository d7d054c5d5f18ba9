//! Phase "authenticate" for SSH: who the client is (its OIDC token, given as the
//! password or at the keyboard-interactive prompt) and what it asks for (the login
//! name: `<resource>`, or `<user>+<resource>` to pick one of the resource's logins).

use portcullis_raft::model::{Protocol, Resource};

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::store::Store;

/// A client that authenticated: the session's identity, resource and host login.
#[derive(Debug, Clone)]
pub struct Login {
    pub identity: Identity,
    pub resource: Resource,
    /// The account the gateway logs in to on the host.
    pub host_user: String,
    /// The credential for it (a private key in OpenSSH format, or a password), opened.
    pub secret: Option<String>,
}

/// The login name split: `(user, resource)`.
pub fn parse_login_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('+') {
        Some((user, resource)) if !user.is_empty() => (Some(user), resource),
        _ => (None, name),
    }
}

/// The resource and host login `name` asks for, for `identity`: the first of the
/// resource's group logins the identity's groups name (the one named `user` when given),
/// else the resource's own.
pub fn resolve<S: Store>(store: &S, name: &str, identity: Identity) -> Result<Login> {
    let (user, resource_name) = parse_login_name(name);
    let resource = match store.resource(resource_name)? {
        Some(r) if r.protocol == Protocol::Ssh => std::sync::Arc::unwrap_or_clone(r),
        _ => return Err(Error::Refused(format!("no SSH resource named {resource_name}"))),
    };
    let group_login =
        resource.logins.iter().find(|l| identity.in_any(&l.groups) && user.is_none_or(|u| u == l.username));
    let (host_user, sealed) = match (group_login, user) {
        (Some(login), _) => (login.username.clone(), login.secret.as_ref()),
        (None, Some(u)) if resource.username.as_deref() == Some(u) => (u.to_string(), resource.secret.as_ref()),
        (None, Some(u)) => {
            return Err(Error::Refused(format!("{resource_name} has no login {u} for your groups")));
        }
        (None, None) => match &resource.username {
            Some(u) => (u.clone(), resource.secret.as_ref()),
            None => return Err(Error::Refused(format!("{resource_name} has no host login configured"))),
        },
    };
    let secret = sealed.map(|s| store.open_secret(s)).transpose()?;
    Ok(Login { identity, resource, host_user, secret })
}

#[cfg(test)]
mod tests {
    use super::parse_login_name;

    #[test]
    fn a_login_name_is_a_resource_or_a_user_plus_a_resource() {
        assert_eq!(parse_login_name("demo-ssh"), (None, "demo-ssh"));
        assert_eq!(parse_login_name("root+demo-ssh"), (Some("root"), "demo-ssh"));
        assert_eq!(parse_login_name("+demo-ssh"), (None, "+demo-ssh"));
    }
}
