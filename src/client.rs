//! The HTTP client of Weft's own commands (`weft sql`, `weft lineage`, and the
//! TUI to come): one base URL, the API token when there is one, and errors
//! that say what the server said, or that it could not be reached.

use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::blocking::{RequestBuilder, Response};

/// Where `weft sql`, `weft lineage` and `weft tui` read from: a running
/// server's API (with its token), or a data directory directly.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Target {
    /// Weft API to ask; ignored with --data-dir.
    #[arg(long, default_value = "http://127.0.0.1:4319")]
    pub server: String,
    /// The API token, when the server wants one (or set WEFT_TOKEN).
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read this data directory directly, without a server (it sees every tenant).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the config file whose query limits and `write_tools` apply.
    #[arg(long, requires = "data_dir")]
    pub config: Option<PathBuf>,
}

impl Target {
    /// The client of the server this names.
    pub fn client(&self) -> Client {
        Client::new(&self.server, self.token.as_deref())
    }
}

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
