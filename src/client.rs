//! The HTTP client of Weft's own commands (`weft sql`, `weft lineage`, and the
//! TUI to come): one base URL, the API token when there is one, and errors
//! that say what the server said, or that it could not be reached.

use anyhow::{Context, bail};
use reqwest::blocking::{RequestBuilder, Response};

/// A running Weft's query API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

/// A successful answer: its body and the reason it was cut short, if it was
/// (the `weft-result-truncated` header).
pub struct Answer {
    pub body: Vec<u8>,
    pub truncated: Option<String>,
}

impl Client {
    /// `server` as given (`http://127.0.0.1:4319`), `token` from `--token` or
    /// `WEFT_TOKEN`.
    pub fn new(server: &str, token: Option<&str>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            http: reqwest::blocking::Client::new(),
        }
    }

    /// `GET` `path` (with its query string).
    pub fn get(&self, path: &str, what: &str) -> anyhow::Result<Answer> {
        self.send(self.http.get(self.url(path)), path, what)
    }

    /// `POST` `body` to `path` as plain text, asking for `accept`.
    pub fn post_text(
        &self,
        path: &str,
        accept: &str,
        body: &str,
        what: &str,
    ) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(self.url(path))
            .header("accept", accept)
            .header("content-type", "text/plain")
            .body(body.to_owned());
        self.send(request, path, what)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the token; a failure names `what` failed and carries the
    /// server's message (the `error` of its JSON body).
    fn send(&self, mut request: RequestBuilder, path: &str, what: &str) -> anyhow::Result<Answer> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let url = self.url(path);
        let response: Response = request.send().with_context(|| {
            format!("cannot reach weft at {url}; is `weft serve` running? (or pass --data-dir)")
        })?;
        let status = response.status();
        let truncated = response
            .headers()
            .get(weft_query::api::TRUNCATED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .with_context(|| format!("the answer from {url} broke off"))?
            .to_vec();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{what} failed ({status}): {message}");
        }
        Ok(Answer { body, truncated })
    }
}
