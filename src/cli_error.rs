//! Why a command failed, and the one place that turns that into the line on
//! stderr and the process exit code.
//!
//! Every command returns `Result<(), CliError>` and carries its failures up
//! with their context (which setting, file, URL or store); `main` reports
//! them here. The exit codes (README, "Commands"):
//!
//! - **0**: success.
//! - **1**: the operation failed: a check found a problem, an I/O or network
//!   error, the store is unavailable or its data corrupt, `send` got an answer
//!   other than 2xx, `render`'s payload is not shown in Discord. Trying again
//!   later, or after fixing what the line names, can succeed.
//! - **2**: usage or configuration: a bad or missing setting, a bad argument,
//!   a fixture that cannot be read or is not JSON, a store configuration the
//!   store refuses. The same invocation will fail again.
//!
//! `serve` follows the same rule: a configuration error exits 2 and a passing
//! failure at start-up (a full disk) exits 1, so systemd restarts only the
//! latter.
//!
//! The line is always one line starting with `drone-discord: `. It is made
//! from setting names, paths, URLs and error texts; secrets never reach it
//! (the secret-bearing types print no value and the store redacts its URI).
use drone_discord::config::ConfigError;
use drone_discord::store::StoreError;
use std::fmt;
use std::process::ExitCode;

/// A failed command: the kind decides the exit code, the text is the line.
#[derive(Debug)]
pub enum CliError {
    /// The operation failed (exit 1).
    Failed(String),
    /// A usage or configuration error (exit 2).
    Usage(String),
}

impl CliError {
    /// The operation failed: `context` names what was being done or used.
    pub fn failed(context: impl fmt::Display, problem: impl fmt::Display) -> Self {
        CliError::Failed(format!("{context}: {problem}"))
    }

    /// A bad argument or setting: `context` names it.
    pub fn usage(context: impl fmt::Display, problem: impl fmt::Display) -> Self {
        CliError::Usage(format!("{context}: {problem}"))
    }

    /// A store failure with `message` as its line: the store's own
    /// classification decides, so a configuration the store refuses is a
    /// usage error and an unavailable or corrupt store a failure.
    pub fn store(e: &StoreError, message: String) -> Self {
        match e {
            StoreError::Config(_) => CliError::Usage(message),
            StoreError::Unavailable(_)
            | StoreError::Corrupt(_)
            | StoreError::Full(_)
            | StoreError::Fenced(_) => CliError::Failed(message),
        }
    }

    /// The process exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
        }
    }

    /// Print the one line to stderr and return the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("drone-discord: {self}");
        ExitCode::from(self.exit_code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (CliError::Failed(m) | CliError::Usage(m)) = self;
        // Error texts from libraries (argh, the HTTP client) may span lines.
        let mut lines = m.lines().map(str::trim).filter(|l| !l.is_empty());
        if let Some(first) = lines.next() {
            f.write_str(first)?;
        }
        for l in lines {
            write!(f, " {l}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_exit_code() {
        assert_eq!(
            CliError::failed("send to http://x/", "refused").exit_code(),
            1
        );
        assert_eq!(CliError::usage("--url", "bad").exit_code(), 2);
        assert_eq!(
            CliError::from(ConfigError::new("DISCORD_TOKEN", "not set")).exit_code(),
            2
        );
        let store = |e: StoreError| CliError::store(&e, e.to_string()).exit_code();
        assert_eq!(store(StoreError::Config("bad path".into())), 2);
        assert_eq!(store(StoreError::Unavailable("disk full".into())), 1);
        assert_eq!(store(StoreError::Corrupt("record 3".into())), 1);
    }

    #[test]
    fn the_line_is_one_line() {
        let e = CliError::Usage("Required options not provided:\n    --from\n".into());
        assert_eq!(e.to_string(), "Required options not provided: --from");
        let e = CliError::from(ConfigError::new("DISCORD_CHANNEL_ID", "not set"));
        assert_eq!(
            e.to_string(),
            "configuration error: DISCORD_CHANNEL_ID: not set"
        );
    }
}
