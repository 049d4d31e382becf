//! Everything that talks to Discord: the REST client (messages, checks,
//! threads and forum posts, webhook execution, interaction answers), its
//! rate limiter, the gateway client that keeps the bot's presence, the rule
//! for Discord ids, file uploads (multipart), and webhook URLs (a secret).
mod decimal;
pub mod gateway;
pub mod ratelimit;
pub mod rest;
pub mod snowflake;
pub mod threads;
pub mod upload;
pub mod webhook;
pub mod webhook_exec;
