//! Which resource a request is for: the path prefix `/r/<resource>/`.

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

#[cfg(test)]
mod tests {
    use super::resource_of;

    #[test]
    fn the_first_segment_after_r_names_the_resource() {
        assert_eq!(resource_of("/r/demo-api/orders/7"), Some(("demo-api", "/orders/7")));
        assert_eq!(resource_of("/r/demo-api"), Some(("demo-api", "/")));
        assert_eq!(resource_of("/r/demo-api/"), Some(("demo-api", "/")));
        assert_eq!(resource_of("/r//x"), None);
        assert_eq!(resource_of("/orders"), None);
    }
}
