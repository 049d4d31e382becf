//! Does `test/test-curls.sh` (bash + openssl + curl) sign exactly like Drone
//! and like `signature::sign`, so that `make test-curls` exercises the real
//! verification path? The script's `--print` output is checked against
//! `Verifier` and `sign`, and its send and `--legacy` modes are run against a
//! small loopback HTTP server that answers with `Verifier`'s verdict.
use drone_discord::signature::{sign, Verifier, VerifyError, DEFAULT_WINDOW};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Special characters on purpose: the script must pass the key to openssl intact.
const SECRET: &str = r#"we"b $hook `x` sec\ret:%s"#;
const FIXED_DATE: &str = "Fri, 12 Nov 2021 23:33:47 GMT";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("test/fixtures/drone"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    assert!(out.len() >= 5);
    out
}

/// The tools the script needs, or a printed reason to skip.
fn tools_missing(tools: &[&str]) -> bool {
    for tool in tools {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            || Command::new(tool)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIP: `{tool}` is not available, cannot run test/test-curls.sh");
            return true;
        }
    }
    false
}

fn script(args: &[&str], secret: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("test/test-curls.sh")).args(args);
    cmd.env_remove("SECRET")
        .env_remove("DRONE_WEBHOOK_SECRET")
        .env_remove("HOST");
    if let Some(s) = secret {
        cmd.env("SECRET", s);
    }
    cmd.env("CURL_MAX_TIME", "60");
    cmd.output().unwrap()
}

fn lower(headers: Vec<(String, String)>) -> Vec<(String, Vec<u8>)> {
    headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes()))
        .collect()
}

#[test]
fn printed_headers_match_sign_and_verify_for_every_fixture() {
    if tools_missing(&["bash", "openssl"]) {
        return;
    }
    let at = drone_discord::httpdate::parse(FIXED_DATE).unwrap();
    let verifier = Verifier::new(SECRET.as_bytes().to_vec(), Some(DEFAULT_WINDOW));
    for path in fixtures() {
        let out = script(
            &["--print", "--date", FIXED_DATE, path.to_str().unwrap()],
            Some(SECRET),
        );
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let printed: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let body = std::fs::read(&path).unwrap();
        assert_eq!(
            printed,
            sign(SECRET.as_bytes(), "hmac-key", &body, at),
            "{}",
            path.display()
        );
        // The signed date is `at` to the second: a verifier allowing no skew
        // at all accepts it. (`Verified` no longer exposes the date.)
        let exact = Verifier::new(SECRET.as_bytes().to_vec(), Some(Duration::ZERO));
        for v in [&verifier, &exact] {
            v.verify("POST", "/", &lower(printed.clone()), &body, at)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let later = at + Duration::from_secs(1);
        assert!(exact
            .verify("POST", "/", &lower(printed), &body, later)
            .is_err());
    }
}

#[test]
fn refuses_to_run_without_a_secret() {
    if tools_missing(&["bash"]) {
        return;
    }
    let out = script(&["--print", fixtures()[0].to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret"));
}

/// What the fake receiver saw: (X-Drone-Event, verdict) per request.
type Seen = Arc<Mutex<Vec<(String, Result<(), VerifyError>)>>>;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1:0 that verifies
/// each POST with `Verifier` and answers 200 or 401.
async fn fake_receiver(secret: &str) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let verifier = Arc::new(Verifier::new(
        secret.as_bytes().to_vec(),
        Some(DEFAULT_WINDOW),
    ));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (v, s) = (verifier.clone(), seen2.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), handle(stream, &v, &s)).await;
            });
        }
    });
    (addr, seen)
}

async fn handle(mut stream: TcpStream, verifier: &Verifier, seen: &Seen) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_len, method, target, headers, content_length) = loop {
        let n = stream.read(&mut chunk).await?;
        assert!(n > 0, "client closed before the headers ended");
        buf.extend_from_slice(&chunk[..n]);
        assert!(buf.len() < 1 << 20);
        let mut raw = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut raw);
        if let httparse::Status::Complete(len) = req.parse(&buf).unwrap() {
            let headers: Vec<(String, Vec<u8>)> = req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect();
            let cl = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| std::str::from_utf8(v).unwrap().parse::<usize>().unwrap())
                .unwrap_or(0);
            break (
                len,
                req.method.unwrap().to_owned(),
                req.path.unwrap().to_owned(),
                headers,
                cl,
            );
        }
    };
    while buf.len() < head_len + content_length {
        let n = stream.read(&mut chunk).await?;
        assert!(n > 0, "client closed before the body ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_len..head_len + content_length];
    let verdict = verifier
        .verify(&method, &target, &headers, body, SystemTime::now())
        .map(|_| ());
    let event = headers
        .iter()
        .find(|(n, _)| n == "x-drone-event")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let (status, reply) = match &verdict {
        Ok(()) => ("200 OK", r#"{"ok":true}"#.to_owned()),
        Err(e) => ("401 Unauthorized", format!(r#"{{"error":"{e}"}}"#)),
    };
    seen.lock().unwrap().push((event, verdict));
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn run_script(args: Vec<String>, secret: Option<&'static str>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        script(&args, secret)
    })
    .await
    .unwrap()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test]
async fn sends_every_fixture_and_each_is_accepted() {
    if tools_missing(&["bash", "openssl", "curl"]) {
        return;
    }
    let (addr, seen) = fake_receiver(SECRET).await;
    let out = run_script(vec!["-H".into(), addr], Some(SECRET)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in fixtures() {
        assert!(
            stdout.contains(&format!("{} -> 200 {{\"ok\":true}}", file_name(&path))),
            "{stdout}"
        );
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), fixtures().len());
    assert!(seen.iter().all(|(_, v)| v.is_ok()));
    // X-Drone-Event is the payload's event type.
    let events: Vec<&str> = seen.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(&events[..5], ["build"; 5]);
    assert!(events.contains(&"repo") && events.contains(&"user"));
}

#[tokio::test]
async fn wrong_secret_fails_the_run() {
    if tools_missing(&["bash", "openssl", "curl"]) {
        return;
    }
    let (addr, seen) = fake_receiver(SECRET).await;
    let fixture = fixtures()[0].to_str().unwrap().to_owned();
    let out = run_script(
        vec![
            "-H".into(),
            addr,
            "-s".into(),
            "not-the-secret".into(),
            fixture,
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-> 401"));
    assert_eq!(seen.lock().unwrap()[0].1, Err(VerifyError::BadSignature));
}

#[tokio::test]
async fn legacy_headers_are_refused_with_401() {
    if tools_missing(&["bash", "openssl", "curl"]) {
        return;
    }
    // The legacy signature is genuine for key "webhook-secret": the refusal must
    // come from the digest (no fixture has that body), not from the HMAC.
    let (addr, seen) = fake_receiver("webhook-secret").await;
    let out = run_script(
        vec!["--legacy".into(), "-H".into(), format!("http://{addr}/")],
        None,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("-> 401").count(),
        fixtures().len(),
        "{stdout}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), fixtures().len());
    assert!(
        seen.iter()
            .all(|(_, v)| *v == Err(VerifyError::DigestMismatch)),
        "{seen:?}"
    );
}
