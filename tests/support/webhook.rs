//! Webhook requests as Drone sends them: the raw HTTP/1.1 bytes of a
//! `POST /` with the JSON body, `X-Drone-Event` and the signature headers.
use std::time::SystemTime;

/// A whole signed webhook request, `X-Drone-Event` taken from the body.
pub fn signed_request(body: &[u8], secret: &str, at: SystemTime) -> Vec<u8> {
    let headers = drone_discord::signature::sign(secret.as_bytes(), "hmac-key", body, at);
    request_with(body, &headers)
}

pub fn request_with(body: &[u8], headers: &[(String, String)]) -> Vec<u8> {
    let event = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nX-Drone-Event: {event}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}
