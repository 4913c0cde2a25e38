//! CORS for the HTTP listeners (OTLP/HTTP and the query API), so browser
//! SDKs and web notebooks can send spans and read answers. Off unless
//! origins are configured (`cors_origins`, `--cors-origin`); preflights are
//! answered before authentication, which then applies to the request itself.

use std::time::Duration;

use anyhow::{Context, ensure};
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins allowed to call, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Cors {
    /// No CORS headers: browsers on other origins are refused.
    #[default]
    Off,
    /// Any origin (`*`).
    Any,
    /// These origins exactly (`https://app.example:8443`).
    Origins(Vec<HeaderValue>),
}

impl Cors {
    /// From the configured list: empty is off, `*` is any origin, anything
    /// else must be `scheme://host[:port]` with no path.
    pub fn parse(origins: &[String]) -> anyhow::Result<Self> {
        if origins.is_empty() {
            return Ok(Cors::Off);
        }
        if origins.iter().any(|o| o == "*") {
            ensure!(
                origins.len() == 1,
                "cors_origins: \"*\" allows every origin; list it alone"
            );
            return Ok(Cors::Any);
        }
        let parsed = origins
            .iter()
            .map(|o| {
                let url = url::Url::parse(o)
                    .ok()
                    .filter(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.host_str().is_some()
                            && u.path() == "/"
                            && !o.ends_with('/')
                            && u.query().is_none()
                    })
                    .with_context(|| {
                        format!(
                            "cors_origins: {o:?} is not an origin; write scheme://host[:port], such as https://notebook.example"
                        )
                    })?;
                HeaderValue::from_str(url.origin().ascii_serialization().as_str())
                    .with_context(|| format!("cors_origins: {o:?} is not a valid header value"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Cors::Origins(parsed))
    }

    /// `router` answering CORS requests from the configured origins.
    pub fn apply(&self, router: Router) -> Router {
        let allow = match self {
            Cors::Off => return router,
            Cors::Any => AllowOrigin::any(),
            Cors::Origins(list) => AllowOrigin::list(list.clone()),
        };
        router.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::ACCEPT,
                ])
                .expose_headers([HeaderName::from_static(weft_query::api::TRUNCATED)])
                .max_age(Duration::from_secs(3600)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_when_read() {
        assert_eq!(Cors::parse(&[]).ok(), Some(Cors::Off));
        assert_eq!(Cors::parse(&["*".into()]).ok(), Some(Cors::Any));
        let list = Cors::parse(&["https://a.example".into(), "http://localhost:3000".into()]);
        assert!(matches!(list, Ok(Cors::Origins(v)) if v.len() == 2));
        for bad in [
            "a.example",
            "https://a.example/path",
            "https://a.example/",
            "ftp://a",
            "*x",
        ] {
            let e = Cors::parse(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("scheme://host"), "{bad}: {e}");
        }
        assert!(Cors::parse(&["*".into(), "https://a.example".into()]).is_err());
    }
}
