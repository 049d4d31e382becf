//! The made-up credentials the end-to-end tests give the real binary:
//! shaped like the real ones and valid nowhere, so a test can assert that
//! none of them reaches a log line, an error line or `/health`.

/// The webhook secret (`DRONE_WEBHOOK_SECRET`) the service is started with.
pub const SECRET: &str = "e2e-webhook-secret";
/// Shaped like a bot token; never valid anywhere.
pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAw.Gtest0.e2e-test-token-not-a-real-token-000";
/// The Discord channel id (`DISCORD_CHANNEL_ID`).
pub const CHANNEL: &str = "100000000000000001";
