//! Everything that talks to Discord: the REST client (messages, checks), its
//! rate limiter, and the gateway client that keeps the bot's presence.
mod decimal;
pub mod gateway;
pub mod ratelimit;
pub mod rest;
