//! Ingest benchmark: accepted webhooks per second and p50/p99 latency for
//! signed ~5 KiB build payloads at 1, 16 and 64 concurrent keep-alive
//! connections, with durable (fsync'd) writes to the embedded store.
//!
//! It assembles the real listener + handler + store in-process (no relay, so
//! only ingest is measured) on loopback and drives it with pre-signed
//! requests, each with a distinct body so none is answered as a replay.
//! Run: `make bench` or `cargo bench --bench ingest`. Env: `BENCH_REQUESTS`
//! (per level, default 2000), `BENCH_LEVELS` (default `1,16,64`).
use drone_discord::endpoints::Endpoints;
use drone_discord::health::Health;
use drone_discord::http::{server, ServerLimits};
use drone_discord::shutdown;
use drone_discord::signature::{self, Verifier};
use drone_discord::store::embedded::EmbeddedStore;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const SECRET: &[u8] = b"bench-webhook-secret";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest benchmark: skipped (not run by `cargo test`; run `make bench` or `cargo bench --bench ingest`)");
        return;
    }
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let health = Arc::new(Health::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let endpoints = Arc::new(Endpoints::new(
            store,
            Verifier::new(SECRET.to_vec(), Some(Duration::from_secs(300))),
            health,
            Arc::new(Notify::new()),
        ));
        let (trigger, stop) = shutdown::channel();
        let server = tokio::spawn(server::listen(listener, endpoints, ServerLimits::default(), stop));

        let template: serde_json::Value =
            serde_json::from_slice(&std::fs::read("test/fixtures/drone/build_success.json").expect("fixture"))
                .expect("fixture json");
        println!("drone-discord ingest benchmark: {requests} signed build webhooks per level, durable writes, loopback");
        println!("| connections | webhooks/s | p50 ms | p99 ms | max ms |");
        println!("|---:|---:|---:|---:|---:|");
        let mut next_id = 1_000_000i64;
        for &conns in &levels {
            // Pre-sign every request so signing is not measured.
            let mut per_conn: Vec<Vec<Vec<u8>>> = vec![Vec::new(); conns];
            for i in 0..requests {
                next_id += 1;
                let mut v = template.clone();
                v["build"]["id"] = next_id.into();
                let body = serde_json::to_vec(&v).expect("json");
                per_conn[i % conns].push(request_bytes(&body));
            }
            let started = Instant::now();
            let mut tasks = Vec::new();
            for reqs in per_conn {
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(reqs.len());
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    s.set_nodelay(true).ok();
                    let mut buf = vec![0u8; 8192];
                    for r in reqs {
                        let t = Instant::now();
                        s.write_all(&r).await.expect("write");
                        let (status, close) = read_response(&mut s, &mut buf).await;
                        assert_eq!(status, 200, "webhook not accepted");
                        lat.push(t.elapsed());
                        if close {
                            // The server caps requests per connection; reconnect like a client would.
                            s = TcpStream::connect(addr).await.expect("reconnect");
                            s.set_nodelay(true).ok();
                        }
                    }
                    lat
                }));
            }
            let mut lat: Vec<Duration> = Vec::new();
            for t in tasks {
                lat.extend(t.await.expect("client task"));
            }
            let total = started.elapsed();
            lat.sort();
            let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1).min(lat.len() - 1)];
            println!(
                "| {conns} | {:.0} | {:.2} | {:.2} | {:.2} |",
                lat.len() as f64 / total.as_secs_f64(),
                pct(0.50).as_secs_f64() * 1e3,
                pct(0.99).as_secs_f64() * 1e3,
                lat[lat.len() - 1].as_secs_f64() * 1e3
            );
        }
        trigger.fire();
        let _ = server.await;
    });
}

fn request_bytes(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-Drone-Event: build\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in signature::sign(SECRET, "hmac-key", body, SystemTime::now()) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Read one response (headers + Content-Length body); return its status and
/// whether the server will close the connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, bool) {
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..]).await.expect("read");
        assert!(n > 0, "server closed the connection");
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf[..filled]) {
            let len = resp
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
            let status = resp.code.unwrap_or(0);
            let close = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
            while filled < head + len {
                let n = s.read(&mut buf[filled..]).await.expect("read body");
                assert!(n > 0, "server closed mid-body");
                filled += n;
            }
            return (status, close);
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
}
