#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::memory::MemoryStore;

fn alice(expires_at: u64) -> Identity {
    Identity {
        subject: "alice".into(),
        email: None,
        name: None,
        groups: vec!["engineers".into()],
        issuer: "https://issuer.example".into(),
        expires_at,
    }
}

#[tokio::test]
async fn nodes_racing_to_make_the_authority_all_use_the_first_one() {
    let store = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let racers: Vec<_> = (0..3).map(|_| tokio::spawn(ensure(store.clone(), stop.clone()))).collect();
    for racer in racers {
        racer.await.unwrap();
    }
    let stored = store.ssh_authority().unwrap().unwrap();
    let opened = Authority::open(store.as_ref()).unwrap().unwrap();
    assert_eq!(opened.ca_line().unwrap(), stored.ca_public_key);
    // Made once: a second round changes nothing.
    ensure(store.clone(), stop).await;
    assert_eq!(store.ssh_authority().unwrap().unwrap(), stored);
}

#[tokio::test]
async fn no_authority_is_made_while_the_node_does_not_serve() {
    let store = Arc::new(MemoryStore::default());
    store.set_serving(false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(ensure(store.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.ssh_authority().unwrap().is_none());
    assert!(DoorKeys::default().current(store.as_ref(), |_, _| russh::server::Config::default()).unwrap().is_none());
    store.set_serving(true);
    task.await.unwrap();
    assert!(store.ssh_authority().unwrap().is_some());
}

#[tokio::test]
async fn the_door_presents_the_host_key_certified_by_the_ca_that_issues_user_certificates() {
    let store = Arc::new(MemoryStore::default());
    ensure(store.clone(), CancellationToken::new()).await;
    let authority = Authority::open(store.as_ref()).unwrap().unwrap();
    let keys = DoorKeys::default();
    let mut presented = None;
    let loaded = keys
        .current(store.as_ref(), |host, cert| {
            presented = Some((host.public_key().clone(), cert.clone()));
            russh::server::Config::default()
        })
        .unwrap()
        .unwrap();
    let (host, cert) = presented.unwrap();
    assert_eq!(cert.public_key(), host.key_data());
    assert_eq!(cert.signature_key(), authority.ca_public().key_data());
    assert_eq!(&loaded.ca, authority.ca_public());
    // Cached: the next connection gets the same configuration.
    let again = keys.current(store.as_ref(), |_, _| panic!("rebuilt")).unwrap().unwrap();
    assert!(Arc::ptr_eq(&loaded.config, &again.config));

    let now = unix_now();
    let user = certs::generate_ed25519("user").unwrap();
    let line = user.public_key().to_openssh().unwrap();
    let issued = authority.issue(&line, &alice(now + 300), now).unwrap();
    assert_eq!(issued.valid_before, now + 300);
    assert_eq!(issued.ca_public_key, store.ssh_authority().unwrap().unwrap().ca_public_key);
    let cert = Certificate::from_openssh(&issued.certificate).unwrap();
    assert_eq!(certs::verify_user(&cert, &loaded.ca, now).unwrap().subject, "alice");
}
