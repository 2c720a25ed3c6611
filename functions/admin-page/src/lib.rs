//! The admin page (CONTRACT §9, "Admin page"): one page application over the platform's own JSON
//! API, its three files compiled into this crate, so neither herald-local nor the cloud needs a
//! build step or a bucket. The cloud serves it from a function of its own: the page needs no
//! permission at all, so it gets none, and its deploys never touch the admin API's.
//!
//! `GET /admin` answers the page; `GET /admin/app.js`, `/admin/app.css` and `/admin/favicon.svg`
//! its files. The page's links carry the path prefix it was served under (a stage, a custom
//! domain's mapping key), taken from the request path. Every answer carries a strict content
//! security policy: scripts and styles from the page's own origin only, no frames of it
//! elsewhere.

use http::{HeaderValue, Method, Response, StatusCode, header};

const INDEX: &str = include_str!("../page/index.html");
const APP_JS: &str = include_str!("../page/app.js");
const APP_CSS: &str = include_str!("../page/app.css");
const FAVICON: &str = include_str!("../page/favicon.svg");

/// Scripts and styles from this origin only; the email preview's sandboxed frame may show inline
/// styles and images, as email HTML has them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; \
                   connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the page's routes start: `/admin` after the prefix.
const PAGE: &str = "/admin";

/// Whether herald-local's development sign-in is offered on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevSignIn {
    Offered,
    Off,
}

/// The page's answer to `method path`, or `None` when the path is not one of the page's (the
/// caller answers its own 404).
pub fn serve(method: &Method, path: &str, dev: DevSignIn) -> Option<Response<String>> {
    let at = path.rfind(PAGE)?;
    let (prefix, rest) = (&path[..at], &path[at + PAGE.len()..]);
    let (content_type, body) = match rest {
        "" | "/" => ("text/html; charset=utf-8", page(prefix, dev)),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS.to_string()),
        "/app.css" => ("text/css; charset=utf-8", APP_CSS.to_string()),
        "/favicon.svg" => ("image/svg+xml", FAVICON.to_string()),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        let message = format!("{method} is not allowed on {path}: the admin page's files answer GET");
        let mut r = Response::new(serde_json::json!({"error": {"code": "method_not_allowed", "message": message}}).to_string());
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    let mut r = Response::new(if method == Method::HEAD { String::new() } else { body });
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(r)
}

/// The page with its links under `prefix` and the development sign-in on or off.
fn page(prefix: &str, dev: DevSignIn) -> String {
    // The prefix comes from the request path: keep it to characters that need no escaping in
    // an HTML attribute or a URL.
    let prefix: String = prefix.chars().filter(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(*c)).collect();
    let prefix = prefix.trim_end_matches('/');
    INDEX.replace("{{BASE}}", prefix).replace("{{DEV_SIGNIN}}", if dev == DevSignIn::Offered { "on" } else { "off" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response<String>> {
        serve(&Method::GET, path, DevSignIn::Off)
    }

    #[test]
    fn the_page_and_its_files_are_served_with_their_types_and_policy() {
        for (path, ty) in [
            ("/admin", "text/html; charset=utf-8"),
            ("/admin/", "text/html; charset=utf-8"),
            ("/admin/app.js", "text/javascript; charset=utf-8"),
            ("/admin/app.css", "text/css; charset=utf-8"),
            ("/admin/favicon.svg", "image/svg+xml"),
        ] {
            let r = get(path).unwrap_or_else(|| panic!("{path} is served"));
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"), "{path}");
            assert!(!r.body().is_empty(), "{path}");
        }
        assert!(get("/admin/other.js").is_none());
        assert!(get("/templates").is_none());
    }

    #[test]
    fn links_carry_the_prefix_the_page_was_served_under() {
        let body = get("/prod/admin").unwrap().into_body();
        assert!(body.contains(r#"src="/prod/admin/app.js""#), "{body}");
        assert!(body.contains(r#"data-base="/prod""#), "{body}");
        let body = get("/admin").unwrap().into_body();
        assert!(body.contains(r#"src="/admin/app.js""#), "{body}");
        // Nothing from the path that could end the attribute.
        let body = get(r#"/x"><script>/admin"#).unwrap().into_body();
        assert!(!body.contains("<script>/"), "{body}");
        assert!(!body.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn the_development_sign_in_is_offered_only_when_asked() {
        assert!(get("/admin").unwrap().body().contains(r#"data-dev-signin="off""#));
        let on = serve(&Method::GET, "/admin", DevSignIn::Offered).unwrap().into_body();
        assert!(on.contains(r#"data-dev-signin="on""#));
    }

    #[test]
    fn other_methods_are_refused_with_a_json_error() {
        let r = serve(&Method::POST, "/admin", DevSignIn::Off).unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(r.body().contains("method_not_allowed"), "{}", r.body());
    }
}
