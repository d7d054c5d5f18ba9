#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use portcullis_api::{ApiError, proto};

use super::CliError;
use super::cluster::status_json;
use super::files::{parse_resources, parse_resources_at};
use super::output::{cell, table};
use super::time::{format_ms, parse_since};

// === files ===

#[test]
fn single_yaml_resource_parses_with_defaults() {
    let text = "name: orders\nprotocol: postgres\naddress: 10.0.0.5:5432\npassword: s3cret\noptions:\n  dbname: orders\n  port: 5432\n  tls: true\n";
    let resources = parse_resources(text).unwrap();
    assert_eq!(resources.len(), 1);
    let r = &resources[0];
    assert_eq!(r.name, "orders");
    assert_eq!(r.protocol(), proto::Protocol::Postgres);
    assert_eq!(r.audit(), proto::AuditMode::Strict);
    assert_eq!(r.secret.as_deref(), Some("s3cret"));
    assert_eq!(r.username, None);
    assert_eq!(r.options["port"], "5432");
    assert_eq!(r.options["tls"], "true");
}

#[test]
fn resource_list_parses_from_json_in_order() {
    let text = r#"{"resources": [
        {"name": "a", "protocol": "ssh", "address": "h:22", "username": "ops", "secret": "k", "audit": "fast"},
        {"name": "b", "protocol": "http", "address": "https://svc"}
    ]}"#;
    let resources = parse_resources(text).unwrap();
    let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(resources[0].audit(), proto::AuditMode::Fast);
    assert_eq!(resources[0].secret.as_deref(), Some("k"));
    assert_eq!(resources[1].protocol(), proto::Protocol::Http);
}

#[test]
fn unknown_protocol_names_the_resource_and_the_choices() {
    let err = parse_resources("name: x\nprotocol: mysql\naddress: h:1\n").unwrap_err();
    assert!(err.contains("resource x") && err.contains("postgres, ssh or http"), "{err}");
}

#[test]
fn misspelled_field_is_refused() {
    let err = parse_resources("name: x\nprotocol: ssh\nadress: h:22\n").unwrap_err();
    assert!(err.contains("adress"), "{err}");
}

#[test]
fn missing_field_in_list_names_its_position() {
    let err = parse_resources(
        "resources:\n  - name: a\n    protocol: ssh\n    address: h:22\n  - name: b\n    protocol: ssh\n",
    )
    .unwrap_err();
    assert!(err.contains("resources[1]") && err.contains("address"), "{err}");
}

#[test]
fn duplicate_and_empty_resource_lists_are_refused() {
    let dup =
        "resources:\n  - {name: a, protocol: ssh, address: 'h:22'}\n  - {name: a, protocol: ssh, address: 'h:23'}\n";
    assert!(parse_resources(dup).unwrap_err().contains("twice"));
    assert!(parse_resources("resources: []\n").is_err());
    assert!(parse_resources("- 1\n- 2\n").is_err());
}

#[test]
fn http_credentials_map_onto_secret_username_and_options() {
    let one = |credential: &str| {
        let text = format!("name: api\nprotocol: http\naddress: https://api.internal/v1\ncredential: {credential}\n");
        parse_resources(&text).unwrap().remove(0)
    };
    let r = one("{ bearer: t0ken }");
    assert_eq!((r.secret.as_deref(), r.username.as_deref()), (Some("t0ken"), None));
    assert_eq!(r.options.len(), 1);
    assert_eq!(r.options["credential"], "bearer");

    let r = one("{ basic: { username: svc, password: pw } }");
    assert_eq!((r.secret.as_deref(), r.username.as_deref()), (Some("pw"), Some("svc")));
    assert_eq!(r.options["credential"], "basic");
    assert!(!r.options.contains_key("credential_name"));

    let r = one("{ header: X-Api-Key, value: k }");
    assert_eq!(r.secret.as_deref(), Some("k"));
    assert_eq!((r.options["credential"].as_str(), r.options["credential_name"].as_str()), ("header", "X-Api-Key"));

    let r = one("{ query: api_key, value: k }");
    assert_eq!(r.secret.as_deref(), Some("k"));
    assert_eq!((r.options["credential"].as_str(), r.options["credential_name"].as_str()), ("query", "api_key"));
}

#[test]
fn http_credential_mistakes_name_the_field() {
    let parse = |rest: &str| parse_resources(&format!("name: api\nprotocol: http\naddress: http://h:80\n{rest}"));
    let cases: [(&str, &[&str]); 9] = [
        ("credential: { bearer: a, value: b }\n", &["credential.value"]),
        ("credential: { bearer: t }\npassword: p\n", &["`credential` or `password`"]),
        ("credential: { bearer: t }\nusername: u\n", &["`username`", "credential: { basic"]),
        ("credential: { basic: { username: u } }\n", &["credential.basic.password is missing"]),
        ("credential: { header: \"Bad Name\", value: v }\n", &["credential.header", "not a header name"]),
        ("credential: { header: Host, value: v }\n", &["credential.header", "set by the gateway"]),
        ("credential: { query: q }\n", &["credential.value is missing"]),
        ("credential: s3cret\n", &["`credential` is one of"]),
        ("credential: { bearer: t }\noptions: { credential: query }\n", &["options.credential"]),
    ];
    for (rest, words) in cases {
        let err = parse(rest).unwrap_err();
        assert!(err.contains("resource api"), "{rest}: {err}");
        for word in words {
            assert!(err.contains(word), "{rest}: {err:?} should mention {word:?}");
        }
        assert!(!err.contains("s3cret"), "{rest}: a secret is never repeated in an error: {err}");
    }
}

#[test]
fn credential_and_ca_are_refused_for_other_protocols() {
    for protocol in ["postgres", "ssh"] {
        let text = format!("name: db\nprotocol: {protocol}\naddress: h:1\ncredential: {{ bearer: t }}\n");
        let err = parse_resources(&text).unwrap_err();
        assert!(err.contains("`credential` is for protocol http only") && err.contains(protocol), "{err}");
        let text = format!("name: db\nprotocol: {protocol}\naddress: h:1\nca: x.pem\n");
        assert!(parse_resources(&text).unwrap_err().contains("`ca` is for protocol http only"));
    }
    let err = parse_resources("name: api\nprotocol: http\naddress: api.internal:443\n").unwrap_err();
    assert!(err.contains("http(s)://"), "{err}");
}

#[test]
fn ca_is_read_from_a_file_next_to_the_resource_file_or_given_inline() {
    let dir = std::env::temp_dir().join(format!("portcullis-ca-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    std::fs::write(dir.join("backend-ca.pem"), &ca).unwrap();
    let text = "name: api\nprotocol: https\naddress: https://h:8443\ncredential: { bearer: t }\nca: backend-ca.pem\n";
    let r = parse_resources_at(text, &dir).unwrap().remove(0);
    assert_eq!(r.options["ca_pem"], ca);

    let inline = serde_json::json!({"name": "api", "protocol": "http", "address": "https://h", "ca": ca}).to_string();
    assert_eq!(parse_resources(&inline).unwrap()[0].options["ca_pem"], ca);

    let missing = parse_resources_at("name: api\nprotocol: http\naddress: https://h\nca: nope.pem\n", &dir);
    assert!(missing.unwrap_err().contains("ca: cannot read"));
    std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
    let junk = parse_resources_at("name: api\nprotocol: http\naddress: https://h\nca: junk.pem\n", &dir);
    assert!(junk.unwrap_err().contains("ca: no certificate"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// === time ===

#[test]
fn since_accepts_ages_relative_to_now() {
    let now = 10_000_000;
    assert_eq!(parse_since("1h", now).unwrap(), now - 3_600_000);
    assert_eq!(parse_since("30m ago", now).unwrap(), now - 1_800_000);
    assert_eq!(parse_since("7d", 1).unwrap(), 0);
}

#[test]
fn since_accepts_rfc3339() {
    assert_eq!(parse_since("1970-01-01T00:00:10Z", 0).unwrap(), 10_000);
    assert_eq!(parse_since("2024-05-01T12:00:00Z", 0).unwrap(), 1_714_564_800_000);
}

#[test]
fn bad_since_is_a_usage_error() {
    let err = parse_since("yesterday", 0).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("1h"), "{err}");
}

#[test]
fn times_format_as_utc_seconds() {
    assert_eq!(format_ms(1_714_564_800_123), "2024-05-01T12:00:00Z");
    assert_eq!(format_ms(0), "-");
}

// === output ===

#[test]
fn table_aligns_columns_without_trailing_spaces() {
    let rows = vec![vec!["1".to_string(), "leader".to_string()], vec!["22".to_string(), "-".to_string()]];
    assert_eq!(table(&["ID", "ROLE"], &rows), "ID  ROLE\n1   leader\n22  -\n");
}

#[test]
fn cells_are_flattened_and_cut() {
    assert_eq!(cell("select 1\nfrom t", 100), "select 1 from t");
    assert_eq!(cell("abcdef", 4), "abc…");
}

#[test]
fn status_json_has_the_documented_shape() {
    let status = proto::ClusterStatusReply {
        leader: None,
        term: 3,
        nodes: vec![proto::NodeStatus {
            id: 2,
            raft_addr: "127.0.0.1:7002".into(),
            admin_addr: "127.0.0.1:7102".into(),
            role: "unreachable".into(),
            ..Default::default()
        }],
    };
    assert_eq!(
        status_json(&status),
        serde_json::json!({
            "leader": null,
            "term": 3,
            "nodes": [{"id": 2, "addr": "127.0.0.1:7002", "admin": "127.0.0.1:7102", "role": "unreachable",
                       "serving": false, "last_applied": 0}],
        })
    );
}

// === errors ===

#[test]
fn usage_errors_exit_2_and_refusals_exit_1() {
    assert_eq!(CliError::NoEndpoint.exit_code(), 2);
    assert_eq!(CliError::NoEndpoint.to_string(), "no endpoint: pass --endpoint or set PORTCULLIS_ENDPOINT");
    let refused = CliError::from(ApiError::Status {
        code: tonic::Code::FailedPrecondition,
        message: "alice requested a1 and may not decide their own request".into(),
    });
    assert_eq!(refused.exit_code(), 1);
    assert_eq!(refused.to_string(), "alice requested a1 and may not decide their own request");
    let unreachable = CliError::from(ApiError::Connect {
        endpoint: "https://127.0.0.1:7101".into(),
        detail: "connection refused (is the node running?)".into(),
    });
    assert_eq!(unreachable.exit_code(), 1);
}

#[test]
fn unauthenticated_errors_say_how_to_pass_a_token() {
    let err = CliError::from(ApiError::Status { code: tonic::Code::Unauthenticated, message: "token expired".into() });
    assert_eq!(err.to_string(), "not authenticated: token expired (pass --token or set PORTCULLIS_TOKEN)");
}
