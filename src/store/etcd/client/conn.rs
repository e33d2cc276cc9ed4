//! How this process reaches etcd: the endpoints (failing over from one to the next), TLS and
//! client certificates, and etcd's user/password auth, as etcdctl takes them (`--cacert`,
//! `--cert`, `--key`, `--user USER[:PASSWORD]`). The HTTP is `ureq`'s (blocking, rustls).
//!
//! Why `ureq` over the JSON gateway rather than `etcd-client` over gRPC, measured on this
//! machine (release builds of a program that reads one key, stripped, 2 cores under load):
//! - size: ureq + rustls (ring) + base64 add 2.2 MB, etcd-client (tonic, TLS) 3.2 MB, and 102
//!   crates against 39; etcd-client's build needs `protoc` and took 411 s against 180 s;
//! - per request: the same within the noise (first request on a new connection 1.0-1.8 ms,
//!   then 0.3-0.7 ms over the gateway, 0.2-0.5 ms over gRPC; a TLS handshake with a client
//!   certificate about 5 ms with either);
//! - etcd-client is async: the store is called synchronously from inside the command's
//!   current-thread runtime, so it would need a runtime of its own on another thread, and
//!   every caller (the agent's threads) would change. ureq is blocking, as the store is.
//!
//! Nothing here runs at start: a client is made when a command opens an etcd store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// How this process authenticates to etcd: given once by the command line (its global
/// options), used by every client the process makes (the CLI's, the agent's threads').
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The CA bundle that signs the servers' certificates (else the public roots).
    pub cacert: Option<PathBuf>,
    /// This client's certificate and key, for a server that asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd's user and password auth.
    pub user: Option<String>,
    pub password: Option<String>,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

/// Set how this process reaches etcd (once, before its first client; later calls are
/// ignored).
pub fn set_access(access: Access) {
    let _ = ACCESS.set(access);
}

pub(super) fn access() -> &'static Access {
    ACCESS.get_or_init(Access::default)
}

/// An endpoint down is passed over after this long (a refused connection at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The user and password, and the token etcd gave for them (shared by a client's copies, so
/// one re-authentication serves all).
struct Auth {
    user: String,
    password: String,
    token: Mutex<Option<String>>,
}

/// The endpoints and how to talk to them; cheap to clone (a watch's thread takes a copy).
#[derive(Clone)]
pub(super) struct Conn {
    /// As the operator gave them, for messages.
    pub(super) shown: Arc<Vec<String>>,
    /// Each one's base URL (`http://HOST:PORT`, `https://HOST:PORT`).
    urls: Arc<Vec<String>>,
    http: ureq::Agent,
    auth: Option<Arc<Auth>>,
    /// The endpoint that answered last, tried first.
    preferred: Arc<AtomicUsize>,
    client_cert: bool,
}

/// An answer that came: its HTTP status and JSON body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Value,
}

/// Why a request failed before etcd could have acted on it: the next endpoint is tried.
fn never_sent(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable
        ),
        ureq::Error::Timeout(t) => {
            matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve)
        }
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_) => true,
        _ => false,
    }
}

impl Conn {
    /// `spec`: `ENDPOINT[,ENDPOINT…]`, each `HOST:PORT` (plain HTTP), `http://HOST:PORT` or
    /// `https://HOST:PORT` (TLS).
    pub(super) fn new(spec: &str, access: &Access) -> anyhow::Result<Conn> {
        let shown: Vec<String> = spec
            .split(',')
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if shown.is_empty() {
            return Err(crate::error::invalid(format!(
                "store etcd://{spec}: no endpoint given (etcd://HOST:PORT[,HOST:PORT...])"
            )));
        }
        let urls: Vec<String> = shown
            .iter()
            .map(
                |e| match e.starts_with("http://") || e.starts_with("https://") {
                    true => e.clone(),
                    false => format!("http://{e}"),
                },
            )
            .collect();
        let tls = urls.iter().any(|u| u.starts_with("https://"));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .tls_config(match tls {
                true => tls_config(access)?,
                false => TlsConfig::default(),
            })
            .build();
        let auth = access.user.as_ref().map(|user| {
            Arc::new(Auth {
                user: user.clone(),
                password: access.password.clone().unwrap_or_default(),
                token: Mutex::new(None),
            })
        });
        Ok(Conn {
            shown: Arc::new(shown),
            urls: Arc::new(urls),
            http: config.into(),
            auth,
            preferred: Arc::new(AtomicUsize::new(0)),
            client_cert: access.cert.is_some(),
        })
    }

    pub(super) fn endpoints(&self) -> String {
        self.shown.join(",")
    }

    /// POST `body` to `path` on the first endpoint that answers, from the one that answered
    /// last; authenticated (again, once, when etcd says the token expired). `resend`: the
    /// request may be sent again on a broken connection (not a transaction, which may have
    /// been applied). `stream`: no time limit on the answer's body (a watch).
    pub(super) fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
        resend: bool,
    ) -> anyhow::Result<Answer> {
        let response = self.send(path, body, Some(timeout), resend)?;
        let (status, mut body) = (response.status().as_u16(), response.into_body());
        let bytes = body
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| anyhow::anyhow!("etcd at {}: {path}: {e}", self.endpoints()))?;
        Ok(Answer {
            status,
            body: self.json(status, &bytes)?,
        })
    }

    /// As `post`, the answer's body left to read as it comes (a watch's stream).
    pub(super) fn open(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<ureq::BodyReader<'static>> {
        let response = self.send(path, body, None, true)?;
        if response.status() != 200 {
            anyhow::bail!(
                "etcd at {}: {path} refused ({})",
                self.endpoints(),
                response.status()
            );
        }
        Ok(response.into_body().into_reader())
    }

    fn send(
        &self,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
        resend: bool,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let text = body.to_string();
        let mut reauthenticated = false;
        let mut why = Vec::new();
        let n = self.urls.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut tries = (0..n).map(|i| (first + i) % n).peekable();
        let mut resent = false;
        while let Some(&i) = tries.peek() {
            let token = self.token(i)?;
            let mut request = self
                .http
                .post(format!("{}{path}", self.urls[i]))
                .header("Content-Type", "application/json");
            if let Some(token) = &token {
                request = request.header("Authorization", token);
            }
            // Not a global timeout: with one, ureq resolves the address on a thread of its
            // own, for every request (measured: 0.5-10 ms on these loaded cores).
            let request = (request.config())
                .timeout_send_body(timeout)
                .timeout_recv_response(timeout)
                .timeout_recv_body(timeout)
                .build();
            match request.send(&text) {
                Ok(response) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    // An expired token: authenticate again and send again (etcd refused it,
                    // so nothing was done).
                    if response.status() == 401 && token.is_some() && !reauthenticated {
                        reauthenticated = true;
                        self.forget_token();
                        continue;
                    }
                    return Ok(response);
                }
                Err(e) if never_sent(&e) => {
                    why.push(format!("{}: {e}{}", self.shown[i], self.hint(i)));
                    tries.next();
                }
                // A kept connection the server had closed meanwhile: once more, on a new one.
                Err(ureq::Error::Io(_)) if resend && !resent => resent = true,
                Err(e) => anyhow::bail!(
                    "etcd at {}: {}: {e}{}; nothing was changed",
                    self.endpoints(),
                    self.shown[i],
                    self.hint(i)
                ),
            }
        }
        anyhow::bail!(
            "etcd at {}: unreachable ({}); nothing was changed",
            self.endpoints(),
            why.join("; ")
        )
    }

    /// What may explain a connection to endpoint `i` that broke: over TLS without a client
    /// certificate, etcd drops it after the handshake when it asks for one.
    fn hint(&self, i: usize) -> &'static str {
        match self.urls[i].starts_with("https://") && !self.client_cert {
            true => " (no client certificate was given: --cert and --key, if etcd asks for one)",
            false => "",
        }
    }

    /// The token to send to endpoint `i`, authenticating first if there is none yet.
    fn token(&self, i: usize) -> anyhow::Result<Option<String>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let mut token = auth.token.lock().expect("token lock");
        if token.is_none() {
            let url = format!("{}/v3/auth/authenticate", self.urls[i]);
            let body = json!({"name": auth.user, "password": auth.password}).to_string();
            let mut response = match self.http.post(url).send(&body) {
                Ok(r) => r,
                // The caller moves on to the next endpoint.
                Err(_) => return Ok(None),
            };
            let status = response.status().as_u16();
            let bytes = response.body_mut().read_to_vec().unwrap_or_default();
            let answer = self.json(status, &bytes)?;
            if status != 200 {
                let why = answer["message"]
                    .as_str()
                    .unwrap_or("authentication refused");
                let hint = match why.contains("CommonName") {
                    true => {
                        " (etcd's JSON gateway, which qrouter speaks, refuses a client \
                             certificate with a CommonName once auth is on: use one without)"
                    }
                    false => "",
                };
                anyhow::bail!(
                    "etcd at {}: user {}: {why}{hint}; nothing was changed",
                    self.endpoints(),
                    auth.user,
                );
            }
            *token = answer["token"].as_str().map(str::to_string);
        }
        Ok(token.clone())
    }

    /// An answer's body: JSON, or for an error a line of text (etcd's gateway answers some
    /// in plain text), taken as its message.
    fn json(&self, status: u16, bytes: &[u8]) -> anyhow::Result<Value> {
        match serde_json::from_slice(bytes) {
            Ok(v) => Ok(v),
            Err(_) if status != 200 => {
                Ok(json!({"message": String::from_utf8_lossy(bytes).trim()}))
            }
            Err(e) => {
                Err(e).with_context(|| format!("etcd at {}: unreadable answer", self.endpoints()))
            }
        }
    }

    fn forget_token(&self) {
        if let Some(auth) = &self.auth {
            *auth.token.lock().expect("token lock") = None;
        }
    }
}

/// The TLS settings `access` names: its CA bundle (else the public roots), and its client
/// certificate and key, both or neither.
fn tls_config(access: &Access) -> anyhow::Result<TlsConfig> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = &access.cacert {
        let certs = certificates(path)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    match (&access.cert, &access.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = private_key(key)?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err(crate::error::invalid(
                "etcd: --cert and --key go together (the client's certificate and its key)",
            ))
        }
    }
    Ok(tls.build())
}

fn pem(path: &PathBuf) -> anyhow::Result<Vec<PemItem<'static>>> {
    let text = std::fs::read(path)
        .map_err(|e| crate::error::invalid(format!("etcd: {}: {e}", path.display())))?;
    ureq::tls::parse_pem(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::error::invalid(format!("etcd: {}: not PEM ({e})", path.display())))
}

fn certificates(path: &PathBuf) -> anyhow::Result<Vec<Certificate<'static>>> {
    let certs: Vec<_> = (pem(path)?.into_iter())
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(crate::error::invalid(format!(
            "etcd: {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &PathBuf) -> anyhow::Result<PrivateKey<'static>> {
    (pem(path)?.into_iter())
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| {
            crate::error::invalid(format!("etcd: {}: no private key in it", path.display()))
        })
}
