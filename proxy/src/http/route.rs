//! Which resource a request is for: the host `<resource>.<base domain>` when a base
//! domain is configured (the path is then relayed as it is), else the path prefix
//! `/r/<resource>/`.

/// A request's resource and the path relayed under it (always starting with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub resource: String,
    pub path: String,
}

/// Where the request goes: by its host (`authority`, port and a final dot ignored,
/// ASCII case ignored) under `base_domain`, else by `/r/<resource>/` in its path;
/// `None` for neither.
pub fn route(authority: Option<&str>, path: &str, base_domain: Option<&str>) -> Option<Route> {
    if let (Some(host), Some(base)) = (authority, base_domain)
        && let Some(resource) = resource_of_host(host, base)
    {
        let path = if path.is_empty() { "/" } else { path };
        return Some(Route { resource, path: path.to_string() });
    }
    let (resource, path) = resource_of(path)?;
    Some(Route { resource: resource.to_string(), path: path.to_string() })
}

/// The resource name and the path under it (always starting with `/`), or `None` for
/// a path outside `/r/`.
pub fn resource_of(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/r/")?;
    let (name, under) = match rest.find('/') {
        Some(at) => (rest.get(..at)?, rest.get(at..)?),
        None => (rest, "/"),
    };
    (!name.is_empty()).then_some((name, under))
}

/// `demo-api.gw.example[:8443]` under `gw.example` is `demo-api` (lower case): exactly
/// one DNS label in front of the base domain.
pub fn resource_of_host(authority: &str, base_domain: &str) -> Option<String> {
    let base = base_domain.trim_matches('.').to_ascii_lowercase();
    if base.is_empty() || authority.starts_with('[') {
        return None;
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority }
    });
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label = host.strip_suffix(&base)?.strip_suffix('.')?;
    let dns_label = !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    dns_label.then(|| label.to_string())
}

#[cfg(test)]
mod tests {
    use super::{Route, resource_of, resource_of_host, route};

    fn to(resource: &str, path: &str) -> Option<Route> {
        Some(Route { resource: resource.into(), path: path.into() })
    }

    #[test]
    fn the_first_segment_after_r_names_the_resource() {
        assert_eq!(resource_of("/r/demo-api/orders/7"), Some(("demo-api", "/orders/7")));
        assert_eq!(resource_of("/r/demo-api"), Some(("demo-api", "/")));
        assert_eq!(resource_of("/r/demo-api/"), Some(("demo-api", "/")));
        assert_eq!(resource_of("/r//x"), None);
        assert_eq!(resource_of("/orders"), None);
    }

    #[test]
    fn one_label_before_the_base_domain_names_the_resource() {
        let base = "gw.example";
        assert_eq!(resource_of_host("demo-api.gw.example", base).as_deref(), Some("demo-api"));
        assert_eq!(resource_of_host("Demo-API.GW.example:8443", base).as_deref(), Some("demo-api"));
        assert_eq!(resource_of_host("demo-api.gw.example.", base).as_deref(), Some("demo-api"));
        assert_eq!(resource_of_host("demo-api.gw.example", ".gw.example.").as_deref(), Some("demo-api"));
        assert_eq!(resource_of_host("gw.example", base), None);
        assert_eq!(resource_of_host(".gw.example", base), None);
        assert_eq!(resource_of_host("a.b.gw.example", base), None);
        assert_eq!(resource_of_host("demo-apigw.example", base), None);
        assert_eq!(resource_of_host("demo-api.gw.example.evil", base), None);
        assert_eq!(resource_of_host("[::1]:8443", base), None);
        assert_eq!(resource_of_host("demo-api.gw.example", ""), None);
    }

    #[test]
    fn the_host_wins_and_its_path_is_relayed_as_it_is() {
        let base = Some("gw.example");
        assert_eq!(route(Some("demo-api.gw.example"), "/orders/7", base), to("demo-api", "/orders/7"));
        assert_eq!(route(Some("demo-api.gw.example"), "/r/other/x", base), to("demo-api", "/r/other/x"));
        assert_eq!(route(Some("demo-api.gw.example"), "", base), to("demo-api", "/"));
        // Another host, or no base domain: the path prefix.
        assert_eq!(route(Some("127.0.0.1:8443"), "/r/demo-api/orders", base), to("demo-api", "/orders"));
        assert_eq!(route(Some("demo-api.gw.example"), "/r/x/y", None), to("x", "/y"));
        assert_eq!(route(Some("demo-api.gw.example"), "/orders", None), None);
        assert_eq!(route(None, "/orders", base), None);
    }
}
