//! A fake Drone API for tests: a real HTTP/1.1 server on 127.0.0.1 (port 0,
//! optional TLS from a test CA), so the real Drone client runs over the real
//! wire. It is as strict as Drone's own handlers (`handler/api/acl`, `auth`,
//! `repos/builds/logs`, `retry.go`):
//!
//! * `Authorization: Bearer <token>`; an unknown token is a guest, and a guest
//!   gets 401 from `GET /api/user`, from a private or internal repository and
//!   from every write, but may read a public repository.
//! * A repository the user cannot see is a 404, not a 403, and so is Restart
//!   without write access; an inactive user is a 403; an admin sees all. A
//!   machine user has no repository permissions of its own, so it sees only
//!   public and internal repositories unless it is an admin.
//! * `GET /api/repos/{o}/{n}/builds/{b}/logs/{stage}/{step}`: the stored log
//!   as is (a JSON array, or JSON lines), sent chunked as Go's `io.Copy` does;
//!   a log can be "not flushed yet" for its first N requests (404 or `[]`).
//! * `POST /api/repos/{o}/{n}/builds/{b}`: a new build, `200` with its JSON.
//! * `GET /api/user`: the token's user.
//!
//! Faults: a delay before every answer, a garbled (HTML) 200, a redirect.
//! Every request is recorded with the status it got.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tls::{make_test_tls, TestTls};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct DroneCall {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    pub authorization: Option<String>,
    pub status: u16,
}

/// How a log answers while it is "not flushed yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unflushed {
    NotFound,
    Empty,
}

#[derive(Clone, Debug)]
struct User {
    login: String,
    admin: bool,
    machine: bool,
    active: bool,
}

#[derive(Clone, Debug, Default)]
struct Repo {
    visibility: String,
    readers: Vec<String>,
    writers: Vec<String>,
    builds: Vec<i64>,
}

#[derive(Clone, Debug)]
struct Log {
    body: Vec<u8>,
    unflushed: usize,
    unflushed_as: Unflushed,
}

#[derive(Default)]
struct State {
    users: HashMap<String, User>,
    repos: HashMap<String, Repo>,
    logs: HashMap<(String, i64, i64, i64), Log>,
    restarts: Vec<(String, i64, i64)>,
    calls: Vec<DroneCall>,
    delay: Option<Duration>,
    garbled: bool,
    redirect: Option<String>,
}

/// The fake. Dropping it stops nothing a test waits on.
pub struct FakeDrone {
    addr: std::net::SocketAddr,
    tls: Option<Arc<TestTls>>,
    state: Arc<Mutex<State>>,
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Answer {
    fn json(status: u16, v: Value) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: v.to_string().into_bytes(),
            chunked: false,
        }
    }

    fn error(status: u16, message: &str) -> Answer {
        Answer::json(status, json!({ "message": message }))
    }
}

impl FakeDrone {
    /// Plain HTTP on 127.0.0.1:0.
    pub async fn start() -> FakeDrone {
        Self::start_inner(None).await
    }

    /// HTTPS with a certificate from a fresh test CA ([`FakeDrone::ca_file`]).
    pub async fn start_tls() -> FakeDrone {
        Self::start_inner(Some(Arc::new(make_test_tls()))).await
    }

    async fn start_inner(tls: Option<Arc<TestTls>>) -> FakeDrone {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let (st, acceptor) = (state.clone(), tls.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (st, acceptor) = (st.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(t) => {
                            if let Ok(s) = t.acceptor.accept(sock).await {
                                serve(s, st).await;
                            }
                        }
                        None => serve(sock, st).await,
                    }
                });
            }
        });
        FakeDrone { addr, tls, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        drone_discord::sync::lock(&self.state)
    }

    /// `http(s)://127.0.0.1:port`, as `DRONE_SERVER` names it.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// The test CA's PEM file (TLS fakes only), for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.ca_file.clone())
    }

    /// A user whose token is `token`.
    pub fn add_user(&self, token: &str, login: &str, admin: bool, machine: bool) {
        let user = User {
            login: login.into(),
            admin,
            machine,
            active: true,
        };
        self.lock().users.insert(token.into(), user);
    }

    /// Marks a user inactive (Drone's 403).
    pub fn deactivate(&self, token: &str) {
        if let Some(u) = self.lock().users.get_mut(token) {
            u.active = false;
        }
    }

    /// A repository (`visibility`: public, internal or private), who may read
    /// and write it (logins; a writer reads too), and its builds' numbers.
    pub fn add_repo(
        &self,
        slug: &str,
        visibility: &str,
        readers: &[&str],
        writers: &[&str],
        builds: &[i64],
    ) {
        let repo = Repo {
            visibility: visibility.into(),
            readers: readers.iter().map(|s| s.to_string()).collect(),
            writers: writers.iter().map(|s| s.to_string()).collect(),
            builds: builds.to_vec(),
        };
        self.lock().repos.insert(slug.into(), repo);
    }

    /// The stored log of a step, as Drone keeps it (bytes as they are sent).
    pub fn set_log(&self, slug: &str, build: i64, stage: i64, step: i64, body: Vec<u8>) {
        let log = Log {
            body,
            unflushed: 0,
            unflushed_as: Unflushed::NotFound,
        };
        self.lock()
            .logs
            .insert((slug.into(), build, stage, step), log);
    }

    /// The log as Drone's JSON array of `{pos, out, time}`, one line each.
    pub fn set_log_lines(&self, slug: &str, build: i64, stage: i64, step: i64, lines: &[&str]) {
        self.set_log(slug, build, stage, step, log_array(lines));
    }

    /// The log's first `n` requests answer as if Drone had not stored it yet.
    pub fn not_flushed_for(
        &self,
        slug: &str,
        build: i64,
        stage: i64,
        step: i64,
        n: usize,
        how: Unflushed,
    ) {
        if let Some(log) = self.lock().logs.get_mut(&(slug.into(), build, stage, step)) {
            log.unflushed = n;
            log.unflushed_as = how;
        }
    }

    /// Wait this long before every answer (a slow server).
    pub fn set_delay(&self, d: Option<Duration>) {
        self.lock().delay = d;
    }

    /// Answer every request with `200` and an HTML page.
    pub fn set_garbled(&self, on: bool) {
        self.lock().garbled = on;
    }

    /// Answer every request with `302 Location: url`.
    pub fn set_redirect(&self, url: Option<&str>) {
        self.lock().redirect = url.map(str::to_string);
    }

    pub fn calls(&self) -> Vec<DroneCall> {
        self.lock().calls.clone()
    }

    /// Restarts done: (slug, restarted build, new build).
    pub fn restarts(&self) -> Vec<(String, i64, i64)> {
        self.lock().restarts.clone()
    }
}

/// Drone's stored form of a log: `[{"pos":0,"out":"…","time":0},…]`.
pub fn log_array(lines: &[&str]) -> Vec<u8> {
    let v: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!({ "pos": i, "out": l, "time": i }))
        .collect();
    Value::from(v).to_string().into_bytes()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    loop {
        let Some((method, path, auth, used)) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        buf.drain(..used);
        let (answer, delay) = {
            let mut s = drone_discord::sync::lock(&state);
            let answer = handle(&mut s, &method, &path, auth.as_deref());
            s.calls.push(DroneCall {
                method,
                path,
                authorization: auth,
                status: answer.status,
            });
            (answer, s.delay)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if write_answer(&mut sock, answer).await.is_err() {
            return;
        }
    }
}

/// One request head (bodies are not used: Drone's restart takes none); the
/// method, path, `Authorization` and the bytes it took.
async fn read_head<S: AsyncRead + Unpin>(
    sock: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, String, Option<String>, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(n) = req.parse(buf).ok()? {
            let auth = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            let (method, path) = (req.method?.to_string(), req.path?.to_string());
            if buf.len() >= n + length {
                return Some((method, path, auth, n + length));
            }
        }
        let mut chunk = [0u8; 8192];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

async fn write_answer<S: AsyncWrite + Unpin>(sock: &mut S, a: Answer) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", a.status);
    for (n, v) in &a.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if a.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        sock.write_all(head.as_bytes()).await?;
        for piece in a.body.chunks(64 * 1024) {
            sock.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await?;
            sock.write_all(piece).await?;
            sock.write_all(b"\r\n").await?;
        }
        sock.write_all(b"0\r\n\r\n").await?;
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", a.body.len()));
        sock.write_all(head.as_bytes()).await?;
        sock.write_all(&a.body).await?;
    }
    sock.flush().await
}

fn handle(s: &mut State, method: &str, path: &str, auth: Option<&str>) -> Answer {
    if let Some(url) = &s.redirect {
        let mut a = Answer::error(302, "Found");
        a.headers.push(("Location", url.clone()));
        return a;
    }
    if s.garbled {
        return Answer {
            status: 200,
            headers: vec![("Content-Type", "text/html".into())],
            body: b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            chunked: false,
        };
    }
    let user = auth
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| s.users.get(t))
        .cloned();
    let segs: Vec<String> = path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        ("GET", ["api", "user"]) => match user {
            Some(u) => Answer::json(
                200,
                json!({ "id": 1, "login": u.login, "admin": u.admin, "machine": u.machine, "active": u.active }),
            ),
            None => Answer::error(401, "Unauthorized"),
        },
        ("GET", ["api", "repos", o, n, "builds", b, "logs", st, sp]) => {
            let slug = format!("{o}/{n}");
            if let Err(a) = access(s, user.as_ref(), &slug, false) {
                return a;
            }
            let key = (slug.clone(), num(b), num(st), num(sp));
            if !s.repos[&slug].builds.contains(&key.1) {
                return Answer::error(404, "sql: no rows in result set");
            }
            let Some(log) = s.logs.get_mut(&key) else {
                return Answer::error(404, "sql: no rows in result set");
            };
            if log.unflushed > 0 {
                log.unflushed -= 1;
                if log.unflushed_as == Unflushed::NotFound {
                    return Answer::error(404, "sql: no rows in result set");
                }
                return Answer::json(200, json!([]));
            }
            Answer {
                status: 200,
                headers: vec![("Content-Type", "application/json".into())],
                body: log.body.clone(),
                chunked: true,
            }
        }
        ("POST", ["api", "repos", o, n, "builds", b]) => {
            let slug = format!("{o}/{n}");
            if let Err(a) = access(s, user.as_ref(), &slug, true) {
                return a;
            }
            let repo = s.repos.get_mut(&slug).expect("access checked the repo");
            let prev = num(b);
            if !repo.builds.contains(&prev) {
                return Answer::error(404, "sql: no rows in result set");
            }
            let number = repo.builds.iter().max().copied().unwrap_or(0) + 1;
            repo.builds.push(number);
            s.restarts.push((slug, prev, number));
            Answer::json(
                200,
                json!({ "id": 1000 + number, "number": number, "parent": prev, "status": "pending" }),
            )
        }
        _ => Answer::error(404, "Not Found"),
    }
}

/// Drone's `acl.InjectRepository` + `acl.CheckAccess`, in their order.
fn access(s: &State, user: Option<&User>, slug: &str, write: bool) -> Result<(), Answer> {
    let Some(repo) = s.repos.get(slug) else {
        return Err(match user {
            Some(_) => Answer::error(404, "Not Found"),
            None => Answer::error(401, "Unauthorized"),
        });
    };
    let Some(user) = user else {
        return match (write, repo.visibility.as_str()) {
            (false, "public") => Ok(()),
            _ => Err(Answer::error(401, "Unauthorized")),
        };
    };
    if user.admin || (!write && matches!(repo.visibility.as_str(), "public" | "internal")) {
        return Ok(());
    }
    let login = &user.login;
    let can_write = !user.machine && repo.writers.contains(login);
    let can_read = can_write || (!user.machine && repo.readers.contains(login));
    if !can_read {
        // No permissions synced for this user and repository.
        return Err(Answer::error(404, "Not Found"));
    }
    if !user.active {
        return Err(Answer::error(403, "Forbidden"));
    }
    if write && !can_write {
        return Err(Answer::error(404, "Not Found"));
    }
    Ok(())
}

fn num(s: &str) -> i64 {
    s.parse().unwrap_or(-1)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
