//! What a client's startup parameters may carry to the backend.
//!
//! Drivers send session settings in the startup message (`application_name`, JDBC's
//! `DateStyle` and `extra_float_digits`, libpq's `PGOPTIONS`). The harmless ones on
//! [`PASSED`] reach the backend as the client asked; `user` and `database` are the
//! gateway's to choose; `client_encoding` must be one the gateway reads text in (it
//! pins UTF8 on the backend); everything else is refused with an error naming it,
//! never dropped silently and never passed unchecked.

use std::collections::BTreeMap;

/// Settings a client may set at startup (lowercase).
pub const PASSED: &[&str] = &[
    "application_name",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "bytea_output",
    "client_min_messages",
];

/// Why a startup message is refused: a SQLSTATE and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Unacceptable {
    pub code: &'static str,
    pub message: String,
}

/// The settings to pass to the backend, or why the startup is refused.
pub fn sort(params: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, Unacceptable> {
    let mut passed = Vec::new();
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "user" | "database" => {}
            "client_encoding" => {
                // asyncpg sends it quoted ('utf-8'), as a SET would take it.
                let v = value.trim().trim_matches('\'').to_ascii_lowercase().replace(['-', '_'], "");
                // UTF8, or SQL_ASCII (any bytes; what libpq sends in the C locale).
                if !matches!(v.as_str(), "utf8" | "unicode" | "sqlascii" | "") {
                    return Err(Unacceptable {
                        code: "0A000",
                        message: format!(
                            "client_encoding {value} is not supported through Portcullis: it reads statements as UTF8; connect with client_encoding=UTF8"
                        ),
                    });
                }
            }
            "options" => passed.extend(options(value)?),
            "replication" => {
                return Err(Unacceptable {
                    code: "0A000",
                    message: "replication connections are not supported through Portcullis".into(),
                });
            }
            lower if PASSED.contains(&lower) => passed.push((name.clone(), value.clone())),
            _ => return Err(unrecognized(name)),
        }
    }
    Ok(passed)
}

fn unrecognized(name: &str) -> Unacceptable {
    Unacceptable {
        code: "42704",
        message: format!("startup parameter {name:?} is not passed through Portcullis; allowed: {}", PASSED.join(", ")),
    }
}

/// `options` (`-c name=value` / `--name=value`, libpq's `PGOPTIONS`): each setting
/// must be on [`PASSED`].
fn options(value: &str) -> Result<Vec<(String, String)>, Unacceptable> {
    let mut out = Vec::new();
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next().unwrap_or_default()
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest
        } else {
            return Err(Unacceptable {
                code: "42704",
                message: format!("startup option {word:?} is not passed through Portcullis; use -c name=value"),
            });
        };
        let Some((name, v)) = setting.split_once('=') else {
            return Err(unrecognized(setting));
        };
        let name = name.replace('-', "_");
        if !PASSED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(unrecognized(&name));
        }
        out.push((name, v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::sort;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn harmless_settings_pass_the_gateways_own_are_dropped_and_the_rest_is_refused() {
        let ok = sort(&params(&[
            ("user", "alice"),
            ("database", "demo"),
            ("application_name", "psql"),
            ("DateStyle", "ISO"),
            ("client_encoding", "'utf-8'"),
            ("options", "-c statement_timeout=5s --lock-timeout=1s"),
        ]))
        .unwrap_or_default();
        assert_eq!(
            ok,
            vec![
                ("DateStyle".to_string(), "ISO".to_string()),
                ("application_name".to_string(), "psql".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("lock_timeout".to_string(), "1s".to_string()),
            ]
        );
        for bad in [
            params(&[("client_encoding", "SJIS")]),
            params(&[("options", "-c standard_conforming_strings=off")]),
            params(&[("options", "-c search_path=evil")]),
            params(&[("session_authorization", "postgres")]),
            params(&[("replication", "database")]),
            params(&[("options", "-X")]),
        ] {
            assert!(sort(&bad).is_err(), "{bad:?}");
        }
    }
}
