//! Member clusters' namespaces, as the views and status name them: `<cluster>/<namespace>`
//! (a namespace name never holds a `/`, so this cluster's namespaces keep their plain names).

/// How a member cluster's namespace is named: `<cluster>/<namespace>`.
pub fn qualified(cluster: &str, namespace: &str) -> String {
    format!("{cluster}/{namespace}")
}

/// The member cluster a view's namespace is in (`None`: this cluster), and its name there.
pub fn split(namespace: &str) -> (Option<&str>, &str) {
    match namespace.split_once('/') {
        Some((cluster, name)) => (Some(cluster), name),
        None => (None, namespace),
    }
}

/// True when `namespace` names a member cluster's namespace.
pub fn is_member(namespace: &str) -> bool {
    namespace.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_namespace_splits_back() {
        let name = qualified("east", "prod");
        assert_eq!(name, "east/prod");
        assert_eq!(split(&name), (Some("east"), "prod"));
        assert_eq!(split("prod"), (None, "prod"));
        assert!(is_member(&name));
        assert!(!is_member("prod"));
    }
}
