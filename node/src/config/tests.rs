#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

const GOOD: &str = r#"
id = 1
data_dir = "/tmp/n1"
key_file = "/tmp/key"
[listen]
raft = "127.0.0.1:7001"
admin = "127.0.0.1:7101"
ops = "127.0.0.1:7201"
[tls]
ca = "/tmp/ca.pem"
cert = "/tmp/n1.pem"
key = "/tmp/n1.key"
[[peers]]
id = 1
raft = "127.0.0.1:7001"
admin = "127.0.0.1:7101"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_fill_raft_tuning() {
    let c = NodeConfig::parse(GOOD, env(&[])).unwrap();
    assert_eq!(c.raft.lease_ms, 1000);
    assert_eq!(c.member().raft_addr, "127.0.0.1:7001");
}

#[test]
fn env_overrides_nested_and_top_level_keys() {
    let c = NodeConfig::parse(
        GOOD,
        env(&[
            ("PORTCULLIS_RAFT__LEASE_MS", "500"),
            ("PORTCULLIS_DATA_DIR", "/elsewhere"),
            ("PORTCULLIS_LISTEN__OPS", "0.0.0.0:9"),
        ]),
    )
    .unwrap();
    assert_eq!(c.raft.lease_ms, 500);
    assert_eq!(c.data_dir, PathBuf::from("/elsewhere"));
    assert_eq!(c.listen.ops, "0.0.0.0:9");
}

#[test]
fn env_override_of_wrong_type_names_the_variable() {
    let err = NodeConfig::parse(GOOD, env(&[("PORTCULLIS_RAFT__LEASE_MS", "soon")])).unwrap_err();
    assert!(err.contains("PORTCULLIS_RAFT__LEASE_MS") && err.contains("integer"), "{err}");
}

#[test]
fn unrelated_client_variables_are_ignored() {
    assert!(NodeConfig::parse(GOOD, env(&[("PORTCULLIS_ENDPOINT", "x"), ("PORTCULLIS_TOKEN", "y")])).is_ok());
}

#[test]
fn malformed_toml_reports_line() {
    let err = NodeConfig::parse("id = \n", env(&[])).unwrap_err();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn unknown_key_is_refused() {
    let err = NodeConfig::parse(&format!("{GOOD}\nbogus = 1\n"), env(&[])).unwrap_err();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn lease_must_be_below_election_timeout() {
    let err = NodeConfig::parse(GOOD, env(&[("PORTCULLIS_RAFT__LEASE_MS", "5000")])).unwrap_err();
    assert!(err.contains("lease_ms"), "{err}");
}

#[test]
fn node_id_must_be_among_peers() {
    let err = NodeConfig::parse(GOOD, env(&[("PORTCULLIS_ID", "4")])).unwrap_err();
    assert!(err.contains("node id 4 is not among the peers"), "{err}");
}

#[test]
fn http_limits_and_base_domain_reach_the_door_settings() {
    let c = NodeConfig::parse(GOOD, env(&[])).unwrap();
    let defaults = portcullis_proxy::http::HttpSettings::default();
    let http = c.limits.http(&c.http);
    assert_eq!(http.max_body_bytes, defaults.max_body_bytes);
    assert_eq!(http.header_timeout, defaults.header_timeout);
    assert_eq!(http.max_json_inspect_bytes, defaults.max_json_inspect_bytes);
    assert_eq!(http.base_domain, None);
    let text = format!(
        "{GOOD}\n[limits]\nhttp_max_body_bytes = 1024\nhttp_body_timeout_secs = 5\n[http]\nbase_domain = \"GW.example.\"\n"
    );
    let c = NodeConfig::parse(&text, env(&[("PORTCULLIS_LIMITS__HTTP_MAX_HEADERS", "7")])).unwrap();
    let http = c.limits.http(&c.http);
    assert_eq!((http.max_body_bytes, http.max_headers), (1024, 7));
    assert_eq!(http.body_timeout, Duration::from_secs(5));
    assert_eq!(http.base_domain.as_deref(), Some("gw.example"));
    let c = NodeConfig::parse(GOOD, env(&[("PORTCULLIS_HTTP__BASE_DOMAIN", "gw.example")])).unwrap();
    assert_eq!(c.limits.http(&c.http).base_domain.as_deref(), Some("gw.example"));
}

#[test]
fn a_bad_base_domain_or_zero_http_timeout_is_refused() {
    let err = NodeConfig::parse(&format!("{GOOD}\n[http]\nbase_domain = \"*.gw.example\"\n"), env(&[])).unwrap_err();
    assert!(err.contains("http.base_domain"), "{err}");
    let err = NodeConfig::parse(GOOD, env(&[("PORTCULLIS_LIMITS__HTTP_BODY_TIMEOUT_SECS", "0")])).unwrap_err();
    assert!(err.contains("limits.http_body_timeout_secs"), "{err}");
}

#[test]
fn the_console_is_off_by_default_and_its_url_defaults_to_its_listener() {
    let c = NodeConfig::parse(GOOD, env(&[])).unwrap();
    assert_eq!(c.console_url(), None);
    assert_eq!(c.console.client_id, "portcullis-console");
    let on = GOOD.replace("ops = \"127.0.0.1:7201\"", "ops = \"127.0.0.1:7201\"\nconsole = \"127.0.0.1:7301\"");
    let c = NodeConfig::parse(&on, env(&[])).unwrap();
    assert_eq!(c.console_url().as_deref(), Some("https://127.0.0.1:7301"));
    let c = NodeConfig::parse(&on, env(&[("PORTCULLIS_CONSOLE__PUBLIC_URL", "https://gw-1.example:8443/")])).unwrap();
    assert_eq!(c.console_url().as_deref(), Some("https://gw-1.example:8443"));
}

#[test]
fn a_console_url_that_is_not_https_or_an_empty_client_id_is_refused() {
    let plain = format!("{GOOD}\n[console]\npublic_url = \"http://gw.example\"\n");
    assert!(NodeConfig::parse(&plain, env(&[])).unwrap_err().contains("console.public_url"));
    let no_openid = format!("{GOOD}\n[console]\nscopes = \"profile groups\"\n");
    assert!(NodeConfig::parse(&no_openid, env(&[])).unwrap_err().contains("console.scopes"));
    let nobody = format!("{GOOD}\n[console]\nclient_id = \" \"\n");
    assert!(NodeConfig::parse(&nobody, env(&[])).unwrap_err().contains("console.client_id"));
}
