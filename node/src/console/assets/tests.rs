#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use axum::body::to_bytes;
use axum::http::{StatusCode, header};

use super::*;

#[test]
fn every_pinned_asset_is_listed_under_a_versioned_name() {
    for key in ["htmx", "htmx-sse", "player-js", "player-css"] {
        let asset = VENDOR.iter().find(|a| a.key == key).unwrap();
        assert!(asset.name.contains(asset.version), "{} should carry its version", asset.name);
        assert_eq!(url(key), format!("/assets/vendor/{}", asset.name));
    }
    assert_eq!(url("nothing"), "");
}

#[tokio::test]
async fn a_vendored_file_is_served_for_a_year_or_says_how_to_get_it() {
    for asset in VENDOR {
        let response = vendor(Path(asset.name.to_string())).await;
        match asset.bytes {
            Some(bytes) => {
                assert_eq!(response.status(), StatusCode::OK);
                assert_eq!(response.headers()[header::CACHE_CONTROL], IMMUTABLE);
                let want = if asset.name.ends_with(".css") { "text/css" } else { "text/javascript" };
                assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with(want));
                assert_eq!(to_bytes(response.into_body(), usize::MAX).await.unwrap(), bytes);
            }
            None => {
                assert_eq!(response.status(), StatusCode::NOT_FOUND);
                let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
                assert!(String::from_utf8_lossy(&body).contains("scripts/install-deps.sh"));
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_asset_is_not_found() {
    let response = vendor(Path("../../etc/passwd".into())).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
