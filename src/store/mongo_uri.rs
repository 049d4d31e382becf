//! The old Python service's MongoDB variables, turned into one connection URI.
//!
//! Existing deployments configure MongoDB with `MONGO_HOST`, `MONGO_PORT`,
//! `MONGO_INITDB_ROOT_USERNAME` and `MONGO_INITDB_ROOT_PASSWORD` (the root
//! user of the official image, which lives in the `admin` database) plus
//! `MONGO_DATABASE`. drone-discord takes `MONGODB_URI` natively; this pure
//! function builds the equivalent URI so an old `.env` keeps working. It is
//! compiled without the `mongodb` feature too, so configuration can say
//! "built without MongoDB support" instead of ignoring the variables.
//!
//! The result contains the password: never log it (use [`redact_uri`]).

/// `mongodb://[user[:password]@]host[:port]/?authSource=admin`, with user and
/// password percent-encoded and an IPv6 host bracketed. The database is not
/// part of the URI: it is passed to the store separately (`MONGO_DATABASE`).
/// `authSource=admin` is added only when a user is given (root users
/// authenticate against `admin`, whatever database they then use).
pub fn uri_from_parts(
    host: &str,
    port: Option<u16>,
    user: Option<&str>,
    password: Option<&str>,
) -> String {
    let mut uri = String::from("mongodb://");
    let user = user.filter(|u| !u.is_empty());
    if let Some(u) = user {
        uri.push_str(&percent_encode(u));
        if let Some(p) = password {
            uri.push(':');
            uri.push_str(&percent_encode(p));
        }
        uri.push('@');
    }
    let host = host.trim();
    let host = if host.is_empty() { "localhost" } else { host };
    if host.contains(':') && !host.starts_with('[') {
        uri.push('[');
        uri.push_str(host);
        uri.push(']');
    } else {
        uri.push_str(host);
    }
    if let Some(p) = port {
        uri.push(':');
        uri.push_str(&p.to_string());
    }
    uri.push('/');
    if user.is_some() {
        uri.push_str("?authSource=admin");
    }
    uri
}

/// RFC 3986: everything but the unreserved characters is encoded, byte by
/// byte of the UTF-8 form, so `@ : / ? # [ ] %` and spaces cannot break the URI.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URI with any password replaced by `***`, for log lines and errors.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "***".into();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map(|(u, _)| u).unwrap_or(userinfo);
            format!("{scheme}://{user}:***@{hosts}{tail}")
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_host_and_port_without_credentials() {
        assert_eq!(
            uri_from_parts("mongo", Some(27017), None, None),
            "mongodb://mongo:27017/"
        );
        assert_eq!(
            uri_from_parts("db.local", None, None, Some("ignored")),
            "mongodb://db.local/"
        );
        assert_eq!(
            uri_from_parts(" ", None, Some(""), None),
            "mongodb://localhost/"
        );
    }

    #[test]
    fn root_user_authenticates_against_admin() {
        assert_eq!(
            uri_from_parts("mongo", Some(27017), Some("root"), Some("example")),
            "mongodb://root:example@mongo:27017/?authSource=admin"
        );
        assert_eq!(
            uri_from_parts("mongo", None, Some("root"), None),
            "mongodb://root@mongo/?authSource=admin"
        );
    }

    #[test]
    fn user_and_password_are_percent_encoded() {
        let uri = uri_from_parts("mongo", Some(1), Some("us:er@x"), Some("p@ss:w/rd?#[]% é"));
        assert_eq!(uri, "mongodb://us%3Aer%40x:p%40ss%3Aw%2Frd%3F%23%5B%5D%25%20%C3%A9@mongo:1/?authSource=admin");
        // Exactly one '@' separates userinfo from the host.
        assert_eq!(uri.matches('@').count(), 1);
        assert_eq!(
            uri_from_parts("h", None, Some("a-b.c_d~"), Some("Z9")),
            "mongodb://a-b.c_d~:Z9@h/?authSource=admin"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            uri_from_parts("::1", Some(27017), None, None),
            "mongodb://[::1]:27017/"
        );
        assert_eq!(
            uri_from_parts("[::1]", None, None, None),
            "mongodb://[::1]/"
        );
    }

    #[test]
    fn redaction_hides_the_password_only() {
        let uri = uri_from_parts("mongo", Some(27017), Some("root"), Some("s3cr3t@:/"));
        let shown = redact_uri(&uri);
        assert_eq!(shown, "mongodb://root:***@mongo:27017/?authSource=admin");
        assert!(!shown.contains("s3cr3t"));
        assert_eq!(redact_uri("mongodb://h1,h2/db"), "mongodb://h1,h2/db");
        assert_eq!(
            redact_uri("mongodb+srv://u:p@cluster/x"),
            "mongodb+srv://u:***@cluster/x"
        );
        assert_eq!(redact_uri("garbage with secret"), "***");
    }
}
