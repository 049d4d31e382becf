//! Property of the REST client's response reader
//! ([`crate::http::client`]'s `response`), and through it of the chunked
//! decoder it uses (input starting with `~`: [`super::chunked`]):
//!
//! * however the bytes are split across reads, the reader reaches the same
//!   response (status, headers, body) or the same error as in one read, and
//!   never panics; a connection it calls reusable when the bytes came at once
//!   it calls reusable when they trickled in;
//! * every response it accepts, written out again with its body framed by
//!   `Content-Length`, reads back as the same response.
use super::input::Input;
use super::runtime::block_on;
use super::split_reader::SplitReader;
use crate::http::client::response::{read_response, Reader};
use crate::http::client::{ClientError, ClientResponse};

/// Largest body the property lets the reader accept.
const MAX_BODY: usize = 1024;

/// One reading of a response: the response and whether the connection may be reused.
pub type Outcome = Result<(ClientResponse, bool), ClientError>;

/// Reads one response from `io` as a `method` request's answer.
pub fn read(mut io: SplitReader<'_>, method: &str) -> Outcome {
    block_on(async {
        let mut reader = Reader::new(&mut io);
        read_response(&mut reader, method, MAX_BODY).await
    })
}

/// A response on the wire, body framed by `Content-Length`.
pub fn serialise(resp: &ClientResponse) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {:03} X\r\n", resp.status).into_bytes();
    for (name, value) in unframed(resp) {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", resp.body.len()).as_bytes());
    out.extend_from_slice(&resp.body);
    out
}

fn unframed(resp: &ClientResponse) -> impl Iterator<Item = &(String, String)> {
    resp.headers.iter().filter(|(n, _)| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding")
    })
}

/// The property. Input: `~` and the chunked decoder's input
/// ([`super::chunked::check`]), or the method (`H` for HEAD, else GET), split
/// sizes, then the stream.
pub fn check(data: &[u8]) {
    if let Some(chunked) = data.strip_prefix(b"~") {
        return super::chunked::check(chunked);
    }
    let mut input = Input::new(data);
    let method = if input.byte() == b'H' { "HEAD" } else { "GET" };
    let mut split_sizes = Input::new(input.take(9));
    let stream = input.rest();
    let whole = read(SplitReader::whole(stream), method);
    let split = read(SplitReader::from_input(&mut split_sizes, stream), method);
    match (&whole, &split) {
        (Ok((a, reuse_a)), Ok((b, reuse_b))) => {
            assert_eq!(a, b, "split reads changed the response");
            assert!(
                !reuse_a || *reuse_b,
                "split reads made the connection unusable"
            );
        }
        _ => assert_eq!(whole, split, "split reads changed the outcome"),
    }
    let Ok((resp, _)) = whole else {
        return;
    };
    assert!(resp.body.len() <= MAX_BODY, "body over the limit");
    assert!(
        !(100..200).contains(&resp.status) || resp.status == 101,
        "an interim response was returned"
    );
    let again = serialise(&resp);
    let (back, _) = match read(SplitReader::whole(&again), method) {
        Ok(back) => back,
        Err(e) => panic!(
            "the re-serialised response {:?} fails: {e}",
            String::from_utf8_lossy(&again)
        ),
    };
    let no_body = method == "HEAD" || matches!(resp.status, 101 | 204 | 304);
    let mut headers: Vec<(String, String)> = unframed(&resp).cloned().collect();
    headers.push(("Content-Length".into(), resp.body.len().to_string()));
    let expected = ClientResponse {
        status: resp.status,
        headers,
        body: if no_body {
            Vec::new()
        } else {
            resp.body.clone()
        },
    };
    assert_eq!(
        back, expected,
        "the re-serialised response reads differently"
    );
}
