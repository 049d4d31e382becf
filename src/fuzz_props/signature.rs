//! Property of the `Signature` header parser and the verifier
//! ([`crate::signature`]):
//!
//! * parse → write out → parse gives the same parameters, and the verifier
//!   answers both forms alike;
//! * for any set of headers, verifying in one step and in two (head, then
//!   body) agree, and nothing panics;
//! * a request signed with the secret verifies, and after any fuzzer-chosen
//!   edit of its `Signature`, `Date`, `Digest` or body it verifies only if the
//!   edit left the MAC, the signed values and the body as they were.
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::time::{Duration, UNIX_EPOCH};

use super::input::Input;
use crate::signature::{parse_params, sign, Params, Verifier, DEFAULT_WINDOW};

type Headers = Vec<(String, Vec<u8>)>;

/// The property. Input: a mode byte, then that mode's bytes.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => parse_round_trip(&String::from_utf8_lossy(input.rest())),
        1 => arbitrary_headers(&mut input),
        _ => signed_then_edited(&mut input),
    }
}

/// A `Signature` value for `params` (with a placeholder `keyId`, which the
/// verifier does not read). Values holding `"` can only have come unquoted.
fn serialise(params: &Params<'_>) -> String {
    fn value(v: &str) -> String {
        if v.contains('"') {
            v.to_owned()
        } else {
            format!("\"{v}\"")
        }
    }
    let mut parts = vec!["keyId=\"fuzz\"".to_owned()];
    if let Some(a) = params.algorithm {
        parts.push(format!("algorithm={}", value(a)));
    }
    parts.push(format!("signature={}", value(params.signature)));
    parts.push(format!("headers={}", value(&params.headers.join(" "))));
    parts.join(",")
}

fn parse_round_trip(raw: &str) {
    let Ok(first) = parse_params(raw) else {
        return;
    };
    let again = serialise(&first);
    let second = parse_params(&again);
    assert_eq!(
        second.as_ref(),
        Ok(&first),
        "{raw:?} re-serialised as {again:?}"
    );
    // The verifier cannot tell the two forms apart (when both are within
    // its length bound: dropping unknown parameters or adding quotes can
    // move a value across it).
    if raw.len().max(again.len()) > 4096 {
        return;
    }
    let verifier = Verifier::new(b"secret".to_vec(), None);
    let with = |sig: &str| -> Headers {
        vec![
            ("date".into(), b"Fri, 12 Nov 2021 23:33:47 GMT".to_vec()),
            (
                "digest".into(),
                b"SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_vec(),
            ),
            ("signature".into(), sig.as_bytes().to_vec()),
        ]
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_636_760_027);
    assert_eq!(
        verifier.verify("POST", "/", &with(raw), b"", now),
        verifier.verify("POST", "/", &with(&again), b"", now),
        "{raw:?} and {again:?} verify differently"
    );
}

/// Names the fuzzer picks from, so it reaches the interesting headers.
const NAMES: [&str; 6] = [
    "signature",
    "authorization",
    "date",
    "digest",
    "host",
    "x-other",
];

fn arbitrary_headers(input: &mut Input<'_>) {
    let secret = input.short_bytes().to_vec();
    let window = match input.byte() {
        0 => None,
        w => Some(Duration::from_secs(u64::from(w) * 10)),
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.u32()));
    let target = input.short_string();
    let mut headers: Headers = Vec::new();
    for _ in 0..usize::from(input.byte() % 8) {
        let pick = usize::from(input.byte());
        let name = NAMES
            .get(pick)
            .map_or_else(|| input.short_string(), |n| (*n).to_owned());
        headers.push((name.to_ascii_lowercase(), input.short_bytes().to_vec()));
    }
    let body = input.rest();
    let verifier = Verifier::new(secret, window);
    let whole = verifier.verify("POST", &target, &headers, body, now);
    let split = verifier
        .verify_head("POST", &target, &headers, now)
        .and_then(|head| head.check_body(body));
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the two paths accepted different signatures"),
        (Err(_), Err(_)) => {}
        _ => panic!("verify says {whole:?}, verify_head + check_body say {split:?}"),
    }
}

fn signed_then_edited(input: &mut Input<'_>) {
    let secret = input.short_bytes().to_vec();
    let key_id = input.short_string();
    let body = input.short_bytes().to_vec();
    // Any second from 1970 to 2106: the verifier's date handling covers them all.
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.u32()));
    let signed: Headers = sign(&secret, &key_id, &body, now)
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes()))
        .collect();
    let verifier = Verifier::new(secret, Some(DEFAULT_WINDOW));
    let genuine = verifier.verify("POST", "/", &signed, &body, now);
    assert!(
        genuine.is_ok(),
        "a fresh signature does not verify: {genuine:?}"
    );

    // Edit one of the four parts: (index, byte) replacements and insertions.
    let mut headers = signed.clone();
    let mut edited_body = body.clone();
    let part = input.byte() % 4;
    let target: &mut Vec<u8> = match part {
        0 => &mut headers[2].1,
        1 => &mut headers[0].1,
        2 => &mut headers[1].1,
        _ => &mut edited_body,
    };
    for _ in 0..1 + usize::from(input.byte() % 4) {
        let at = usize::from(input.u16()) % (target.len() + 1);
        let byte = input.byte();
        match input.byte() % 3 {
            0 if at < target.len() => target[at] = byte,
            1 => target.insert(at, byte),
            _ if at < target.len() => {
                target.remove(at);
            }
            _ => target.push(byte),
        }
    }
    let later = now + Duration::from_secs(u64::from(input.byte()));
    if verifier
        .verify("POST", "/", &headers, &edited_body, later)
        .is_err()
    {
        return;
    }
    // It verified: then the edit changed nothing the MAC covers.
    let raw = |h: &Headers, i: usize| String::from_utf8_lossy(&h[i].1).trim().to_owned();
    assert_eq!(raw(&headers, 0), raw(&signed, 0), "an edited Date verified");
    assert_eq!(
        raw(&headers, 1),
        raw(&signed, 1),
        "an edited Digest verified"
    );
    assert_eq!(edited_body, body, "an edited body verified");
    let mac = |h: &Headers| {
        let text = String::from_utf8_lossy(&h[2].1).into_owned();
        parse_params(&text)
            .ok()
            .map(|p| (B64.decode(p.signature).ok(), p.headers))
    };
    assert_eq!(mac(&headers), mac(&signed), "an edited signature verified");
}
