//! Nonces for creates: what makes a repeated create return the first
//! message instead of posting a second one.
//!
//! Discord deduplicates `nonce` (with `enforce_nonce`) per author across
//! all channels, and accepts at most 25 characters. So a nonce must name
//! everything that makes a message distinct: the Drone server (`system.host`
//! of the webhook, empty when absent), the key (the build), the destination
//! (channel id) and the generation (0 for the first message, another value
//! for a fresh message that replaces one). These are hashed with SHA-256 and
//! the first 128 bits written in base62 (22 characters, fixed width): two
//! servers, builds, destinations or generations never share a nonce, and
//! the same four always give the same one, across restarts and versions.
//! (A readable, truncated key would collide for long keys and could not
//! carry the server and destination at all.)
use ring::digest::{Context, SHA256};

/// Discord's limit for `nonce`.
pub const MAX_NONCE_CHARS: usize = 25;

/// Characters of a nonce: 128 bits in base62 (62^22 > 2^128).
const NONCE_CHARS: usize = 22;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The nonce for creating `key`'s message from Drone server `server` in
/// channel `channel_id`, generation `generation`. See the module docs.
pub fn nonce_for(server: &str, key: &str, channel_id: &str, generation: u32) -> String {
    let mut h = Context::new(&SHA256);
    h.update(b"drone-discord nonce v1\0");
    // Length-prefixed, so no two field splits hash alike.
    for field in [server, key, channel_id] {
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(&generation.to_be_bytes());
    let digest = h.finish();
    let digest = digest.as_ref();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let mut n = u128::from_be_bytes(first);
    let mut out = [b'0'; NONCE_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// The generation of a fresh message that replaces `message_id` (deleted,
/// or no longer editable): derived from the replaced message, so a retry
/// after a crash (the store still names the old message) reuses the nonce,
/// and never 0, the first message's generation.
pub fn replacement_generation(message_id: &str) -> u32 {
    let h = message_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const HOST: &str = "drone.example.com";
    const CH: &str = "100000000000000001";

    #[test]
    fn nonce_is_short_stable_and_varies_by_generation() {
        let k = "build:9223372036854775807";
        let n = nonce_for(HOST, k, CH, 0);
        assert_eq!(n.chars().count(), 22);
        assert!(n.len() <= MAX_NONCE_CHARS);
        assert!(n.bytes().all(|b| b.is_ascii_alphanumeric()), "{n}");
        // Stable, and pinned (checked against an independent SHA-256): a
        // change of the derivation would let a create repeated across an
        // upgrade post a second message, so it must not happen unnoticed.
        assert_eq!(n, nonce_for(HOST, k, CH, 0));
        assert_eq!(nonce_for("", "build:1", CH, 0), "0j2FlNIQX1wyuGEM5X9Z7A");
        assert_ne!(n, nonce_for(HOST, k, CH, 3));
        assert!(nonce_for(HOST, k, CH, u32::MAX).len() <= MAX_NONCE_CHARS);
        // A very long key is hashed, not truncated: keys that share a long
        // prefix still differ.
        let long = "x".repeat(200);
        assert_ne!(
            nonce_for(HOST, &format!("{long}1"), CH, 0),
            nonce_for(HOST, &format!("{long}2"), CH, 0)
        );
        assert!(nonce_for(HOST, &long, CH, 0).len() <= MAX_NONCE_CHARS);
    }

    #[test]
    fn nonce_differs_per_server_destination_generation_and_key() {
        let base = nonce_for(HOST, "build:7", CH, 0);
        assert_ne!(
            base,
            nonce_for("drone.other.example", "build:7", CH, 0),
            "server"
        );
        assert_ne!(base, nonce_for("", "build:7", CH, 0), "no server");
        assert_ne!(
            base,
            nonce_for(HOST, "build:7", "100000000000000002", 0),
            "destination"
        );
        assert_ne!(base, nonce_for(HOST, "build:7", CH, 1), "generation");
        assert_ne!(base, nonce_for(HOST, "build:8", CH, 0), "key");
        // Field boundaries matter: moving characters between fields changes it.
        assert_ne!(nonce_for("ab", "c", CH, 0), nonce_for("a", "bc", CH, 0));
        // No collisions over many builds, servers and generations.
        let mut seen = HashSet::new();
        for server in ["", HOST, "drone.other.example"] {
            for id in 0..2000 {
                for generation in [0, 1, replacement_generation("1234567890123456789")] {
                    assert!(seen.insert(nonce_for(server, &format!("build:{id}"), CH, generation)));
                }
            }
        }
    }

    #[test]
    fn replacement_generation_is_stable_and_never_the_first() {
        assert_eq!(
            replacement_generation("1234"),
            replacement_generation("1234")
        );
        assert_ne!(
            replacement_generation("1234"),
            replacement_generation("1235")
        );
        assert_ne!(replacement_generation(""), 0);
    }
}
