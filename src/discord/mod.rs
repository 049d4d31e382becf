//! Everything that talks to Discord: the REST client (messages, checks), its
//! rate limiter, the gateway client that keeps the bot's presence, and the
//! rule for Discord ids.
mod decimal;
pub mod gateway;
pub mod ratelimit;
pub mod rest;
pub mod snowflake;
