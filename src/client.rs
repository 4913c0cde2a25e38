//! The HTTP client of Weft's own commands (`weft sql`, `weft lineage`, and the
//! TUI to come): one base URL, the API token when there is one, and errors
//! that say what the server said, or that it could not be reached.

use std::path::{Path, PathBuf};

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
    /// With an https:// server: the CA certificate (PEM) its certificate is
    /// checked against, besides the system's (or set WEFT_CA_CERT).
    #[arg(long, env = "WEFT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Read this data directory directly, without a server (it sees every tenant).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the config file whose query limits, `write_tools` and evidence settings apply.
    #[arg(long, requires = "data_dir")]
    pub config: Option<PathBuf>,
}

impl Target {
    /// The client of the server this names.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.server, self.token.as_deref(), self.ca_cert.as_deref())
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
    /// Every header of the answer.
    pub headers: reqwest::header::HeaderMap,
}

impl Client {
    /// `server` as given (`http://127.0.0.1:4319`, or `https://…` for a
    /// server with TLS), `token` from `--token` or `WEFT_TOKEN`, and the CA
    /// to trust besides the system's (a self-signed or private CA).
    pub fn new(server: &str, token: Option<&str>, ca_cert: Option<&Path>) -> anyhow::Result<Self> {
        let mut http = reqwest::blocking::Client::builder();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            http = http.tls_certs_merge(certs);
        }
        Ok(Self {
            base: server.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            http: http.build().context("cannot set up the HTTP client")?,
        })
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
            format!(
                "cannot reach weft at {url}; is `weft serve` running? (or pass --data-dir; \
                 for a server with TLS, an https:// --server and, for a private CA, --ca-cert)"
            )
        })?;
        let status = response.status();
        let truncated = response
            .headers()
            .get(weft_query::api::TRUNCATED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = response.headers().clone();
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
        Ok(Answer {
            body,
            truncated,
            headers,
        })
    }
}
