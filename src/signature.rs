//! Drone's webhook signatures: draft-cavage HTTP Signatures with HMAC-SHA256,
//! a `Digest` of the body and a signed `Date`.
//!
//! Drone sends, for every global webhook:
//!
//! ```text
//! Date: Fri, 12 Nov 2021 23:33:47 GMT
//! Digest: SHA-256=<base64(sha256(body))>
//! Signature: keyId="hmac-key",algorithm="hmac-sha256",signature="<b64>",headers="date digest"
//! ```
//!
//! The HMAC covers only the listed headers, so the body is bound through the
//! digest and freshness through the date; [`Verifier::verify`] therefore
//! insists that both `date` and `digest` are signed, that the digest matches
//! the body and (unless disabled) that the date is inside a window around now.
//! A signed request still verifies if replayed inside the window; the caller
//! refuses replays by remembering [`Verified::signature`].
//!
//! Everything but the digest needs only the head, so verification comes in
//! two steps: [`Verifier::verify_head`] as soon as the headers are in (the
//! server answers 401 without reading the body, and before `100 Continue`),
//! then [`VerifiedHead::check_body`] once the body is read.
//!
//! Decisions worth knowing:
//! * Only `hmac-sha256` is accepted. A missing `algorithm` parameter is read as
//!   `hmac-sha256` (the draft derives the algorithm from the key, and our only
//!   key is an HMAC-SHA256 secret). `hs2019` is refused: the draft defines it
//!   as HMAC with **SHA-512**, which Drone never sends, and accepting it as
//!   SHA-256 would be a private dialect.
//! * `keyId` must be present but its value is not checked: there is one secret.
//! * The signature may arrive as `Signature: <params>` or as
//!   `Authorization: Signature <params>` (both forms are in the draft).
use crate::clock::{decision, Clock, ClockState, Verdict};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// HMAC-SHA256 on ring, which the binary carries for TLS anyway (the `hmac`
/// and `sha2` crates would be a second SHA-256).
struct HmacSha256(ring::hmac::Context);

impl HmacSha256 {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> Tag {
        Tag(self.0.sign())
    }

    /// Compares in constant time.
    fn verify_slice(self, sent: &[u8]) -> Result<(), ()> {
        let tag = self.0.sign();
        let tag = tag.as_ref();
        if tag.len() != sent.len() {
            return Err(());
        }
        let diff = tag.iter().zip(sent).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) == 0 {
            Ok(())
        } else {
            Err(())
        }
    }
}

/// A finished MAC.
struct Tag(ring::hmac::Tag);

impl Tag {
    fn into_bytes(self) -> ring::hmac::Tag {
        self.0
    }
}

/// SHA-256 on ring.
struct Sha256;

impl Sha256 {
    fn digest(data: &[u8]) -> ring::digest::Digest {
        ring::digest::digest(&ring::digest::SHA256, data)
    }
}

/// The default accepted clock skew between Drone and us, either way.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// Longest `Signature` header we parse. Drone's is about 130 bytes.
const MAX_SIGNATURE_HEADER: usize = 4096;
/// Most entries in the `headers` parameter.
const MAX_SIGNED_HEADERS: usize = 32;
/// Longest value of one signed header (all its instances joined).
const MAX_SIGNED_VALUE: usize = 8192;
/// Longest header name echoed back in an error.
const MAX_NAME_IN_ERROR: usize = 40;

/// Checks Drone's signatures with the shared secret.
pub struct Verifier {
    secret: Vec<u8>,
    window: Option<Duration>,
    /// Judges the `Date` while the system clock is not synchronised
    /// (`crate::clock`); `None`: the system clock is trusted.
    clock: Option<Arc<Clock>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secret", &"<redacted>")
            .field("window", &self.window)
            .field("clock", &self.clock)
            .finish()
    }
}

/// A request that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The base64 signature exactly as sent; unique per (date, body), so it is
    /// the replay key.
    pub signature: String,
    /// The signed `Date`: kept for the unit tests, which check that it was
    /// read; the service needs only the signature.
    #[cfg(test)]
    date: SystemTime,
}

/// A head whose signature and date passed ([`Verifier::verify_head`]); the
/// body still has to match the signed digest ([`VerifiedHead::check_body`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedHead {
    signature: String,
    /// The signed `Digest` value (all instances joined).
    digest: Vec<u8>,
    #[cfg(test)]
    date: SystemTime,
}

impl VerifiedHead {
    /// Checks the body against the signed `Digest`: the last step of [`Verifier::verify`].
    pub fn check_body(self, body: &[u8]) -> Result<Verified, VerifyError> {
        check_digest(&self.digest, body)?;
        Ok(Verified {
            signature: self.signature,
            #[cfg(test)]
            date: self.date,
        })
    }
}

/// Why a request was refused. `Display` is short and never contains the
/// secret or a computed MAC; header names from the request are truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A required header is absent (`signature`, `date`, `digest`, or a header
    /// the `headers` parameter lists).
    Missing(String),
    /// The header is present but unreadable, over a size limit, or contradictory.
    Malformed(&'static str),
    /// `algorithm` is not `hmac-sha256`.
    UnsupportedAlgorithm,
    /// The `headers` parameter does not list this header, which must be signed.
    HeadersNotSigned(&'static str),
    /// The `Digest` header has no `SHA-256` entry.
    UnsupportedDigest,
    /// The signed digest does not match the body.
    DigestMismatch,
    /// The signed date is further from now than the window (positive: in the past).
    DateOutOfWindow { skew_s: i64 },
    /// The clock is not synchronised and the signed date is older than the
    /// last time known for certain minus the window (`crate::clock`).
    DateBeforeKnownTime { behind_s: i64 },
    /// The HMAC does not match: wrong secret or altered headers.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Missing(name) => write!(f, "missing header: {name}"),
            VerifyError::Malformed(why) => write!(f, "malformed signature: {why}"),
            VerifyError::UnsupportedAlgorithm => f.write_str("unsupported signature algorithm"),
            VerifyError::HeadersNotSigned(which) => write!(f, "header not signed: {which}"),
            VerifyError::UnsupportedDigest => f.write_str("unsupported digest (need SHA-256)"),
            VerifyError::DigestMismatch => f.write_str("digest does not match body"),
            VerifyError::DateOutOfWindow { skew_s } => {
                write!(f, "date out of window (skew {skew_s} s)")
            }
            VerifyError::DateBeforeKnownTime { behind_s } => write!(
                f,
                "date older than the last time known for certain (by {behind_s} s; clock not synchronised)"
            ),
            VerifyError::BadSignature => f.write_str("bad signature"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// The parameters of a `Signature` header that we use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Params<'a> {
    pub(crate) algorithm: Option<&'a str>,
    pub(crate) signature: &'a str,
    pub(crate) headers: Vec<String>,
}

impl Verifier {
    /// `window: None` turns the date check off (the date must still be signed
    /// and well-formed).
    pub fn new(secret: Vec<u8>, window: Option<Duration>) -> Self {
        Verifier {
            secret,
            window,
            clock: None,
        }
    }

    /// Judge dates with `clock`'s state and last known time instead of
    /// trusting the system clock (`crate::clock::decision`).
    pub fn with_clock(mut self, clock: Arc<Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The clock dates are judged with, for the caller to report real work.
    pub fn clock(&self) -> Option<&Arc<Clock>> {
        self.clock.as_ref()
    }

    /// Verify a request. `headers` are (lower-case name, raw value) in request
    /// order, as in `crate::http::Request`; `target` is the request target as
    /// sent (used for `(request-target)`). The same checks as
    /// [`Verifier::verify_head`] followed by [`VerifiedHead::check_body`];
    /// for a request that fails several, the digest is reported before the date.
    pub fn verify(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let signature = self.authenticate(method, target, headers)?;
        // The headers are authentic; now check they fit this body and this time.
        let digest = joined_header(headers, "digest")?.ok_or_else(|| missing("digest"))?;
        check_digest(&digest, body)?;
        let _date = self.check_date(headers, now)?;
        Ok(Verified {
            signature,
            #[cfg(test)]
            date: _date,
        })
    }

    /// The checks that need only the head: the signature's parameters, the
    /// HMAC over the signed headers (so `Date` and `Digest` are authentic) and
    /// the date window. The server runs this as soon as the headers are in,
    /// so a forged or stale request is refused before its body is read; the
    /// digest is checked against the body afterwards ([`VerifiedHead::check_body`]).
    pub fn verify_head(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, Vec<u8>)],
        now: SystemTime,
    ) -> Result<VerifiedHead, VerifyError> {
        let signature = self.authenticate(method, target, headers)?;
        let digest = joined_header(headers, "digest")?.ok_or_else(|| missing("digest"))?;
        let _date = self.check_date(headers, now)?;
        Ok(VerifiedHead {
            signature,
            digest,
            #[cfg(test)]
            date: _date,
        })
    }

    /// Parameters, algorithm, the signed header list and the HMAC; returns
    /// the signature as sent.
    fn authenticate(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, Vec<u8>)],
    ) -> Result<String, VerifyError> {
        let raw = signature_params(headers)?;
        let params = parse_params(raw)?;

        match params.algorithm {
            None => {}
            Some(a) if a.eq_ignore_ascii_case("hmac-sha256") => {}
            Some(_) => return Err(VerifyError::UnsupportedAlgorithm),
        }
        for required in ["date", "digest"] {
            if !params.headers.iter().any(|h| h == required) {
                return Err(VerifyError::HeadersNotSigned(required));
            }
        }

        let sent_mac = B64
            .decode(params.signature)
            .map_err(|_| VerifyError::Malformed("signature is not base64"))?;
        let signing_string = signing_string(method, target, headers, &params.headers)?;
        let mut mac = self.mac();
        mac.update(&signing_string);
        mac.verify_slice(&sent_mac)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(params.signature.to_owned())
    }

    /// The signed `Date`, inside the window around `now` (unless disabled).
    fn check_date(
        &self,
        headers: &[(String, Vec<u8>)],
        now: SystemTime,
    ) -> Result<SystemTime, VerifyError> {
        let date = joined_header(headers, "date")?.ok_or_else(|| missing("date"))?;
        let date = std::str::from_utf8(&date)
            .ok()
            .and_then(crate::httpdate::parse)
            .ok_or(VerifyError::Malformed("date is not an HTTP date"))?;
        if let Some(window) = self.window {
            let verdict = match &self.clock {
                Some(clock) => clock.judge(window, now, date),
                None => decision::judge(ClockState::Synced, None, window, now, date),
            };
            match verdict {
                Verdict::InWindow | Verdict::AfterKnownTime => {}
                Verdict::OutOfWindow { skew_s } => {
                    return Err(VerifyError::DateOutOfWindow { skew_s })
                }
                Verdict::BeforeKnownTime { behind_s } => {
                    return Err(VerifyError::DateBeforeKnownTime { behind_s })
                }
            }
        }
        Ok(date)
    }

    fn mac(&self) -> HmacSha256 {
        mac_for(&self.secret)
    }
}

fn mac_for(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (longer ones are hashed first).
    HmacSha256(ring::hmac::Context::with_key(&ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        secret,
    )))
}

fn missing(name: &str) -> VerifyError {
    let mut name = crate::text::cut_chars(name, MAX_NAME_IN_ERROR);
    name.retain(|c| c.is_ascii_graphic());
    VerifyError::Missing(name)
}

/// The parameter list from `Signature:` or `Authorization: Signature …`.
fn signature_params(headers: &[(String, Vec<u8>)]) -> Result<&str, VerifyError> {
    let mut found: Option<&[u8]> = None;
    for (name, value) in headers {
        let params = match name.as_str() {
            "signature" => Some(value.as_slice()),
            "authorization" => strip_scheme(value),
            _ => None,
        };
        if let Some(p) = params {
            if found.is_some() {
                return Err(VerifyError::Malformed("more than one signature"));
            }
            found = Some(p);
        }
    }
    let raw = found.ok_or_else(|| missing("signature"))?;
    if raw.len() > MAX_SIGNATURE_HEADER {
        return Err(VerifyError::Malformed("signature header too long"));
    }
    std::str::from_utf8(raw).map_err(|_| VerifyError::Malformed("signature header is not UTF-8"))
}

/// `Signature <params>` (scheme case-insensitive) → `<params>`.
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..10)?;
    if scheme.eq_ignore_ascii_case(b"signature ") {
        value.get(10..)
    } else {
        None
    }
}

/// Parse `name="value", name=value, …`: any order, optional whitespace around
/// `,` and `=`, unknown parameters ignored, a repeated parameter refused.
pub(crate) fn parse_params(raw: &str) -> Result<Params<'_>, VerifyError> {
    let mut seen: Vec<String> = Vec::new();
    let mut key_id = None;
    let mut algorithm = None;
    let mut signature = None;
    let mut headers = None;

    let mut rest = raw.trim_matches(|c| c == ' ' || c == '\t');
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or(VerifyError::Malformed("parameter without '='"))?;
        let name = name.trim_matches(|c| c == ' ' || c == '\t');
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(VerifyError::Malformed("bad parameter name"));
        }
        let after = after.trim_start_matches([' ', '\t']);
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            quoted
                .split_once('"')
                .ok_or(VerifyError::Malformed("unterminated quote"))?
        } else {
            // An unquoted token runs to the next ',' (kept in `after`).
            let end = after.find(',').unwrap_or(after.len());
            let (token, tail) = after.split_at_checked(end).unwrap_or((after, ""));
            (token.trim_end_matches([' ', '\t']), tail)
        };
        let after = after.trim_start_matches([' ', '\t']);
        rest = match after.strip_prefix(',') {
            Some(r) => r.trim_start_matches([' ', '\t']),
            None if after.is_empty() => after,
            None => return Err(VerifyError::Malformed("expected ',' between parameters")),
        };

        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(VerifyError::Malformed("duplicate parameter"));
        }
        match lower.as_str() {
            "keyid" => key_id = Some(value),
            "algorithm" => algorithm = Some(value),
            "signature" => signature = Some(value),
            "headers" => headers = Some(value),
            _ => {}
        }
        seen.push(lower);
        if seen.len() > 16 {
            return Err(VerifyError::Malformed("too many parameters"));
        }
    }

    key_id.ok_or(VerifyError::Malformed("no keyId"))?;
    let signature = signature.ok_or(VerifyError::Malformed("no signature parameter"))?;
    if signature.is_empty() {
        return Err(VerifyError::Malformed("empty signature"));
    }
    let headers: Vec<String> = match headers {
        None => vec!["date".to_owned()],
        Some(list) => list
            .split_ascii_whitespace()
            .map(str::to_ascii_lowercase)
            .collect(),
    };
    if headers.is_empty() {
        return Err(VerifyError::Malformed("empty headers parameter"));
    }
    if headers.len() > MAX_SIGNED_HEADERS {
        return Err(VerifyError::Malformed("too many signed headers"));
    }
    Ok(Params {
        algorithm,
        signature,
        headers,
    })
}

/// All instances of a header, trimmed and joined with `", "` (as the draft
/// says), or `None` if absent.
fn joined_header(
    headers: &[(String, Vec<u8>)],
    name: &str,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let mut out: Option<Vec<u8>> = None;
    for (n, v) in headers {
        if n != name {
            continue;
        }
        let v = v.trim_ascii();
        let buf = out.get_or_insert_with(Vec::new);
        if !buf.is_empty() {
            buf.extend_from_slice(b", ");
        }
        buf.extend_from_slice(v);
        if buf.len() > MAX_SIGNED_VALUE {
            return Err(VerifyError::Malformed("signed header too long"));
        }
    }
    Ok(out)
}

/// The bytes the HMAC covers: `name: value` lines joined by `\n`.
fn signing_string(
    method: &str,
    target: &str,
    headers: &[(String, Vec<u8>)],
    listed: &[String],
) -> Result<Vec<u8>, VerifyError> {
    let mut out = Vec::with_capacity(256);
    for (i, name) in listed.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if name == "(request-target)" {
            if target.len() > MAX_SIGNED_VALUE {
                return Err(VerifyError::Malformed("request target too long"));
            }
            out.extend_from_slice(method.to_ascii_lowercase().as_bytes());
            out.push(b' ');
            out.extend_from_slice(target.as_bytes());
        } else if name.starts_with('(') {
            return Err(VerifyError::Malformed("unsupported pseudo-header"));
        } else {
            let value = joined_header(headers, name)?.ok_or_else(|| missing(name))?;
            out.extend_from_slice(&value);
        }
    }
    Ok(out)
}

/// Find the SHA-256 entry of a `Digest` list and compare it with the body.
fn check_digest(digest: &[u8], body: &[u8]) -> Result<(), VerifyError> {
    let digest =
        std::str::from_utf8(digest).map_err(|_| VerifyError::Malformed("digest is not UTF-8"))?;
    let want = Sha256::digest(body);
    let mut found = false;
    for entry in digest.split(',') {
        let Some((alg, value)) = entry.trim().split_once('=') else {
            return Err(VerifyError::Malformed("digest entry without '='"));
        };
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let sent = B64
            .decode(value.trim())
            .map_err(|_| VerifyError::Malformed("digest is not base64"))?;
        let want = want.as_ref();
        if sent.len() != want.len() {
            return Err(VerifyError::Malformed(
                "SHA-256 digest has the wrong length",
            ));
        }
        if sent.as_slice() != want {
            return Err(VerifyError::DigestMismatch);
        }
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err(VerifyError::UnsupportedDigest)
    }
}

/// Sign exactly as Drone does. Returns `[("Date", …), ("Digest", …), ("Signature", …)]`.
/// `key_id` is informational (the receiver ignores it); `"` is removed from it.
pub fn sign(secret: &[u8], key_id: &str, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
    let date = crate::httpdate::format(now);
    let digest = format!("SHA-256={}", B64.encode(Sha256::digest(body)));
    let mut mac = mac_for(secret);
    mac.update(format!("date: {date}\ndigest: {digest}").as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    let key_id: String = key_id
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    let signature = format!(
        "keyId=\"{key_id}\",algorithm=\"hmac-sha256\",signature=\"{sig}\",headers=\"date digest\""
    );
    vec![
        ("Date".to_owned(), date),
        ("Digest".to_owned(), digest),
        ("Signature".to_owned(), signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"webhook-secret";
    const VECTOR_DATE: &str = "Fri, 12 Nov 2021 23:33:47 GMT";
    const VECTOR_DIGEST: &str = "SHA-256=kCit1zUa+1aDpnZhDSBCa0iVYPTeF6k2jCjHwE2lnQY=";
    const VECTOR_SIG: &str = "nMQOWQSyloFPh3ZB8Uoh/D9QyzCtnVf0tk/jemJm058=";

    fn vector_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_636_760_027)
    }

    fn h(name: &str, value: &str) -> (String, Vec<u8>) {
        (name.to_owned(), value.as_bytes().to_vec())
    }

    /// The legacy header set whose signature is the known-answer vector.
    fn vector_headers(signature_header: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            h("host", "localhost:5000"),
            h("date", VECTOR_DATE),
            h("digest", VECTOR_DIGEST),
            h("signature", signature_header),
        ]
    }

    fn vector_sig_header() -> String {
        format!(
            r#"keyId="hmac-key",algorithm="hmac-sha256",signature="{VECTOR_SIG}",headers="date digest""#
        )
    }

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/test/fixtures/drone");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
        out.sort();
        assert!(out.len() >= 5, "fixtures missing in {dir}");
        out
    }

    /// Headers as the server would hand them over: lower-case names.
    fn signed_request(secret: &[u8], body: &[u8], now: SystemTime) -> Vec<(String, Vec<u8>)> {
        sign(secret, "hmac-key", body, now)
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes()))
            .collect()
    }

    fn verify(
        v: &Verifier,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        v.verify("POST", "/", headers, body, now)
    }

    #[test]
    fn known_answer_vector() {
        let mut mac = mac_for(SECRET);
        mac.update(format!("date: {VECTOR_DATE}\ndigest: {VECTOR_DIGEST}").as_bytes());
        assert_eq!(B64.encode(mac.finalize().into_bytes()), VECTOR_SIG);
        // And sign() produces the same for a body with that digest's time.
        let headers = sign(SECRET, "hmac-key", b"", vector_time());
        assert_eq!(headers[0], ("Date".to_owned(), VECTOR_DATE.to_owned()));
    }

    #[test]
    fn legacy_vector_headers_pass_the_hmac_but_not_any_fixture_body() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let headers = vector_headers(&vector_sig_header());
        for (name, body) in fixtures() {
            assert_eq!(
                verify(&v, &headers, &body, SystemTime::now()),
                Err(VerifyError::DigestMismatch),
                "{name}"
            );
        }
        // With the default window it is (also) far too old.
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let (_, body) = &fixtures()[0];
        assert!(verify(&v, &headers, body, SystemTime::now()).is_err());
    }

    #[test]
    fn sign_then_verify_every_fixture() {
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let now = SystemTime::now();
        for (name, body) in fixtures() {
            let headers = signed_request(SECRET, &body, now);
            let ok = verify(&v, &headers, &body, now).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                ok.date,
                SystemTime::UNIX_EPOCH + Duration::from_secs(to_secs(now))
            );
            let sig_header = String::from_utf8(headers[2].1.clone()).unwrap();
            assert!(sig_header.contains(&format!("signature=\"{}\"", ok.signature)));
        }
    }

    fn to_secs(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn wrong_key_is_bad_signature() {
        let v = Verifier::new(b"another-secret".to_vec(), Some(DEFAULT_WINDOW));
        let now = SystemTime::now();
        let body = br#"{"event":"build"}"#;
        let headers = signed_request(SECRET, body, now);
        assert_eq!(
            verify(&v, &headers, body, now),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn tampered_signed_header_is_bad_signature() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let mut headers = vector_headers(&vector_sig_header());
        headers[1] = h("date", "Fri, 12 Nov 2021 23:33:48 GMT");
        assert_eq!(
            verify(&v, &headers, b"", vector_time()),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn missing_headers() {
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let now = SystemTime::now();
        let body = b"{}";
        let full = signed_request(SECRET, body, now);
        for (drop, name) in [(0, "date"), (1, "digest"), (2, "signature")] {
            let mut headers = full.clone();
            headers.remove(drop);
            assert_eq!(
                verify(&v, &headers, body, now),
                Err(VerifyError::Missing(name.to_owned())),
                "without {name}"
            );
        }
    }

    #[test]
    fn signature_must_cover_date_and_digest() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let only_date =
            format!(r#"keyId="k",algorithm="hmac-sha256",signature="{VECTOR_SIG}",headers="date""#);
        assert_eq!(
            verify(&v, &vector_headers(&only_date), b"", vector_time()),
            Err(VerifyError::HeadersNotSigned("digest"))
        );
        // No headers parameter means just "date".
        let default = format!(r#"keyId="k",algorithm="hmac-sha256",signature="{VECTOR_SIG}""#);
        assert_eq!(
            verify(&v, &vector_headers(&default), b"", vector_time()),
            Err(VerifyError::HeadersNotSigned("digest"))
        );
        let only_digest = format!(r#"keyId="k",signature="{VECTOR_SIG}",headers="digest""#);
        assert_eq!(
            verify(&v, &vector_headers(&only_digest), b"", vector_time()),
            Err(VerifyError::HeadersNotSigned("date"))
        );
    }

    #[test]
    fn parameters_in_any_order_with_whitespace_and_unknowns() {
        let v = Verifier::new(SECRET.to_vec(), None);
        // The vector's headers verify their HMAC; with a body that matches the
        // digest nothing is known, so expect DigestMismatch (not Malformed or
        // BadSignature) to prove the header parsed and the HMAC matched.
        for header in [
            format!(
                r#"headers="date digest", signature="{VECTOR_SIG}" ,algorithm="hmac-sha256",keyId="hmac-key""#
            ),
            format!(
                r#"  keyId = "hmac-key" , created=1636759227, signature="{VECTOR_SIG}", foo="a,b=c", headers="date   digest"  "#
            ),
            format!(
                r#"KeyId="hmac-key",Algorithm="HMAC-SHA256",Signature="{VECTOR_SIG}",Headers="Date Digest""#
            ),
            format!(r#"keyId="hmac-key",signature="{VECTOR_SIG}",headers="date digest""#),
        ] {
            assert_eq!(
                verify(&v, &vector_headers(&header), b"{}", vector_time()),
                Err(VerifyError::DigestMismatch),
                "{header}"
            );
        }
        // Also accepted as Authorization: Signature …
        let mut headers = vector_headers("");
        headers.pop();
        headers.push(h(
            "authorization",
            &format!("Signature {}", vector_sig_header()),
        ));
        assert_eq!(
            verify(&v, &headers, b"{}", vector_time()),
            Err(VerifyError::DigestMismatch)
        );
    }

    #[test]
    fn malformed_signature_headers() {
        let v = Verifier::new(SECRET.to_vec(), None);
        for header in [
            String::new(),
            "garbage".to_owned(),
            format!(r#"keyId="a",keyId="b",signature="{VECTOR_SIG}",headers="date digest""#),
            format!(
                r#"keyId="a",signature="{VECTOR_SIG}",signature="{VECTOR_SIG}",headers="date digest""#
            ),
            format!(r#"keyId="a",signature="{VECTOR_SIG}",headers="date digest"#),
            format!(r#"signature="{VECTOR_SIG}",headers="date digest""#),
            r#"keyId="a",headers="date digest""#.to_owned(),
            r#"keyId="a",signature="!!notbase64!!",headers="date digest""#.to_owned(),
            format!(r#"keyId="a",signature="{VECTOR_SIG}",headers="""#),
            format!(r#"keyId="a" signature="{VECTOR_SIG}",headers="date digest""#),
            format!(r#"keyId="a",signature="{VECTOR_SIG}",headers="date digest","#)
                + &"x=1,".repeat(2000),
        ] {
            let got = verify(&v, &vector_headers(&header), b"", vector_time());
            assert!(
                matches!(got, Err(VerifyError::Malformed(_))),
                "{header:.80}: {got:?}"
            );
        }
        // Two Signature headers.
        let mut headers = vector_headers(&vector_sig_header());
        headers.push(h("signature", &vector_sig_header()));
        assert!(matches!(
            verify(&v, &headers, b"", vector_time()),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn only_hmac_sha256() {
        let v = Verifier::new(SECRET.to_vec(), None);
        for alg in ["hs2019", "rsa-sha256", "hmac-sha512", ""] {
            let header = format!(
                r#"keyId="k",algorithm="{alg}",signature="{VECTOR_SIG}",headers="date digest""#
            );
            assert_eq!(
                verify(&v, &vector_headers(&header), b"", vector_time()),
                Err(VerifyError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn digest_mismatch_and_unsupported_digest() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let now = SystemTime::now();
        let body = br#"{"event":"build"}"#;
        let headers = signed_request(SECRET, body, now);
        assert_eq!(
            verify(&v, &headers, br#"{"event":"user"}"#, now),
            Err(VerifyError::DigestMismatch)
        );

        // A Digest list: the SHA-256 entry is used, others ignored, name case-insensitive.
        let b64 = B64.encode(Sha256::digest(body));
        for (digest, want) in [
            (format!("MD5=abc=, sha-256={b64}"), Ok(())),
            (format!("SHA-512=xyz,SHA-256={b64}"), Ok(())),
            (
                "SHA-512=xyz".to_owned(),
                Err(VerifyError::UnsupportedDigest),
            ),
            (
                "SHA-256=AAAA".to_owned(),
                Err(VerifyError::Malformed(
                    "SHA-256 digest has the wrong length",
                )),
            ),
        ] {
            assert_eq!(check_digest(digest.as_bytes(), body), want, "{digest}");
        }
        // And through verify(), signed by hand with a list digest.
        let digest = format!("MD5=abc=, SHA-256={b64}");
        let date = crate::httpdate::format(now);
        let mut mac = mac_for(SECRET);
        mac.update(format!("date: {date}\ndigest: {digest}").as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let headers = vec![
            h("date", &date),
            h("digest", &digest),
            h(
                "signature",
                &format!(
                    r#"keyId="k",algorithm="hmac-sha256",signature="{sig}",headers="date digest""#
                ),
            ),
        ];
        assert!(verify(&v, &headers, body, now).is_ok());
    }

    #[test]
    fn stale_and_future_dates() {
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let signed_at = vector_time();
        let body = b"{}";
        let headers = signed_request(SECRET, body, signed_at);
        // Edges of the window pass.
        assert!(verify(&v, &headers, body, signed_at + Duration::from_secs(300)).is_ok());
        assert!(verify(&v, &headers, body, signed_at - Duration::from_secs(300)).is_ok());
        assert_eq!(
            verify(&v, &headers, body, signed_at + Duration::from_secs(301)),
            Err(VerifyError::DateOutOfWindow { skew_s: 301 })
        );
        assert_eq!(
            verify(&v, &headers, body, signed_at - Duration::from_secs(301)),
            Err(VerifyError::DateOutOfWindow { skew_s: -301 })
        );
        // Window disabled: a year later still verifies and reports the signed date.
        let off = Verifier::new(SECRET.to_vec(), None);
        let later = signed_at + Duration::from_secs(365 * 86_400);
        assert_eq!(
            verify(&off, &headers, body, later).map(|ok| ok.date),
            Ok(signed_at)
        );
    }

    #[test]
    fn request_target_pseudo_header() {
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let now = vector_time();
        let body = b"{}";
        let date = crate::httpdate::format(now);
        let digest = format!("SHA-256={}", B64.encode(Sha256::digest(body)));
        let mut mac = mac_for(SECRET);
        mac.update(
            format!("(request-target): post /hook?x=1\ndate: {date}\ndigest: {digest}").as_bytes(),
        );
        let sig = B64.encode(mac.finalize().into_bytes());
        let headers = vec![
            h("date", &date),
            h("digest", &digest),
            h(
                "signature",
                &format!(
                    r#"keyId="k",algorithm="hmac-sha256",signature="{sig}",headers="(request-target) date digest""#
                ),
            ),
        ];
        assert!(v.verify("POST", "/hook?x=1", &headers, body, now).is_ok());
        assert_eq!(
            v.verify("POST", "/other", &headers, body, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v.verify("PUT", "/hook?x=1", &headers, body, now),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn listed_header_must_be_present() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let header =
            format!(r#"keyId="k",signature="{VECTOR_SIG}",headers="date digest x-drone-event""#);
        assert_eq!(
            verify(&v, &vector_headers(&header), b"", vector_time()),
            Err(VerifyError::Missing("x-drone-event".to_owned()))
        );
        let header =
            format!(r#"keyId="k",signature="{VECTOR_SIG}",headers="date digest (created)""#);
        assert!(matches!(
            verify(&v, &vector_headers(&header), b"", vector_time()),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn absurd_sizes_are_refused() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let long = format!(
            r#"keyId="{}",signature="{VECTOR_SIG}",headers="date digest""#,
            "k".repeat(10_000)
        );
        assert_eq!(
            verify(&v, &vector_headers(&long), b"", vector_time()),
            Err(VerifyError::Malformed("signature header too long"))
        );
        let many = format!(
            r#"keyId="k",signature="{VECTOR_SIG}",headers="date digest {}""#,
            "date ".repeat(40)
        );
        assert_eq!(
            verify(&v, &vector_headers(&many), b"", vector_time()),
            Err(VerifyError::Malformed("too many signed headers"))
        );
        let mut headers = vector_headers(&vector_sig_header());
        headers[1] = h("date", &"x".repeat(10_000));
        assert_eq!(
            verify(&v, &headers, b"", vector_time()),
            Err(VerifyError::Malformed("signed header too long"))
        );
        // Non-UTF-8 bytes do not panic.
        let headers = vec![(String::from("signature"), vec![0xff, 0xfe, b'"'])];
        assert!(matches!(
            verify(&v, &headers, b"", vector_time()),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn other_authorization_schemes_are_not_signatures() {
        let v = Verifier::new(SECRET.to_vec(), None);
        let mut headers = vector_headers(&vector_sig_header());
        headers.push(h("authorization", "Bearer abc"));
        headers.push(h("authorization", "Sig"));
        assert_eq!(
            verify(&v, &headers, b"{}", vector_time()),
            Err(VerifyError::DigestMismatch)
        );
    }

    /// Mutated and random headers must produce an error, never a panic.
    #[test]
    fn mangled_input_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let base = vector_sig_header().into_bytes();
        let alphabet = b"\"=, \t\\abcdefghijklmnopqrstuvwxyz()-+/0123456789\xff\x00";
        for round in 0..20_000 {
            let mut sig = base.clone();
            for _ in 0..(next() % 6) {
                let pos = (next() as usize) % (sig.len() + 1);
                match next() % 3 {
                    0 if pos < sig.len() => {
                        sig.remove(pos);
                    }
                    1 if pos < sig.len() => sig[pos] = alphabet[(next() as usize) % alphabet.len()],
                    _ => sig.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let mut headers = vector_headers("");
            headers[3].1 = sig;
            if round % 3 == 0 {
                let len = (next() % 40) as usize;
                headers[1].1 = (0..len)
                    .map(|_| alphabet[(next() as usize) % alphabet.len()])
                    .collect();
            }
            let got = verify(&v, &headers, b"{}", vector_time());
            assert!(got.is_err());
        }
    }

    #[test]
    fn head_check_refuses_without_a_body_and_body_check_finishes() {
        let v = Verifier::new(SECRET.to_vec(), Some(DEFAULT_WINDOW));
        let now = SystemTime::now();
        let body = br#"{"event":"build"}"#;
        let headers = signed_request(SECRET, body, now);
        // The head alone verifies; its digest is then checked against the body.
        let head = v.verify_head("POST", "/", &headers, now).unwrap();
        assert_eq!(
            head.clone().check_body(br#"{"event":"user"}"#),
            Err(VerifyError::DigestMismatch)
        );
        let done = head.check_body(body).unwrap();
        assert_eq!(Ok(done), verify(&v, &headers, body, now));
        // Wrong key, stale date, missing or unsigned headers: refused at the head.
        let wrong = Verifier::new(b"another-secret".to_vec(), Some(DEFAULT_WINDOW));
        assert_eq!(
            wrong.verify_head("POST", "/", &headers, now),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v.verify_head("POST", "/", &headers, now + Duration::from_secs(301)),
            Err(VerifyError::DateOutOfWindow { skew_s: 301 })
        );
        let mut no_sig = headers.clone();
        no_sig.pop();
        assert_eq!(
            v.verify_head("POST", "/", &no_sig, now),
            Err(VerifyError::Missing("signature".to_owned()))
        );
        let only_date =
            format!(r#"keyId="k",algorithm="hmac-sha256",signature="{VECTOR_SIG}",headers="date""#);
        assert_eq!(
            v.verify_head("POST", "/", &vector_headers(&only_date), vector_time()),
            Err(VerifyError::HeadersNotSigned("digest"))
        );
        // The legacy vector's head is authentic; only its body can fail it.
        let off = Verifier::new(SECRET.to_vec(), None);
        let legacy = off
            .verify_head(
                "POST",
                "/",
                &vector_headers(&vector_sig_header()),
                vector_time(),
            )
            .unwrap();
        assert_eq!(legacy.check_body(b"{}"), Err(VerifyError::DigestMismatch));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_display() {
        let v = Verifier::new(b"super-secret-value".to_vec(), None);
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("super-secret-value") && dbg.contains("redacted"));
        let now = SystemTime::now();
        let headers = signed_request(b"super-secret-value", b"{}", now);
        let wrong = Verifier::new(b"other".to_vec(), None);
        let err = verify(&wrong, &headers, b"{}", now).unwrap_err();
        assert_eq!(err.to_string(), "bad signature");
    }
}
