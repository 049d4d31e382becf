//! The log output: one line per `tracing` event on stderr, kept by a
//! `RUST_LOG`-style filter.
//!
//! It stands in for tracing-subscriber's `fmt` layer and `Targets` filter, which
//! cost the Pi binary about 60 KiB for features this service does not use
//! (span storage, per-layer filtering, pluggable formatters and timers). It
//! keeps what the service relied on, byte for byte:
//!
//! * the line: `2026-01-02T03:04:05.123456Z  INFO message key=value other="text"`
//!   (UTC, microseconds; the level padded to five; the message first, then the
//!   fields, `%display` values bare and strings `Debug`-quoted); no timestamp of
//!   our own under journald (`JOURNAL_STREAM`), which stamps lines itself;
//! * colours (dimmed time, coloured level, italic field names) only when stderr
//!   is a terminal and not the journal;
//! * control characters in the message escaped, so that no payload can drive
//!   the terminal;
//! * the filter syntax and precedence of `Targets`: comma-separated
//!   `level`, `target`, `target=level` or `target[{field,…}]=level`
//!   directives; the most specific directive that matches an event decides.
//!
//! The service records events only; spans are accepted and ignored.
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Install the stderr logger for the whole process. `filter` is a `RUST_LOG`
/// value; the error says why it is not one, or that a logger is already set.
pub fn init(filter: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter: Filter = filter
        .parse()
        .map_err(|e| format!("{filter:?} is not a log filter: {e}"))?;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let logger = Logger {
        filter,
        timestamps: !journald,
        ansi: !journald && std::io::stderr().is_terminal(),
        next_span: AtomicU64::new(1),
    };
    tracing::subscriber::set_global_default(logger).map_err(|e| e.to_string())
}

/// A parsed `RUST_LOG` value: directives, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    directives: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    /// Matches events whose target starts with this.
    target: Option<String>,
    /// Matches only events that carry every one of these fields.
    fields: Vec<String>,
    level: LevelFilter,
}

/// Why a `RUST_LOG` value is not a filter (the wording of tracing-subscriber's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

fn invalid(msg: &str) -> FilterError {
    FilterError(format!("invalid filter directive: {msg}"))
}

fn level(s: &str) -> Result<LevelFilter, FilterError> {
    s.parse::<LevelFilter>()
        .map_err(|e| FilterError(e.to_string()))
}

impl FromStr for Directive {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        let mut split = s.split('=');
        let head = split.next().unwrap_or_default();
        let Some(lvl) = split.next() else {
            // A bare level, or a bare target (which then logs everything).
            return Ok(match level(head) {
                Ok(level) => Directive {
                    target: None,
                    fields: Vec::new(),
                    level,
                },
                Err(_) => Directive {
                    target: Some(head.to_string()),
                    fields: Vec::new(),
                    level: LevelFilter::TRACE,
                },
            });
        };
        if split.next().is_some() {
            return Err(invalid("too many '=' in filter directive, expected 0 or 1"));
        }
        let mut parts = head.split("[{");
        let target = parts.next().map(String::from);
        let mut fields = Vec::new();
        if let Some(list) = parts.next() {
            if parts.next().is_some() {
                return Err(invalid(
                    "too many '[{' in filter directive, expected 0 or 1",
                ));
            }
            if !list.ends_with("}]") {
                return Err(invalid("expected fields list to end with '}]'"));
            }
            fields.extend(
                list.trim_end_matches("}]")
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(String::from),
            );
        }
        Ok(Directive {
            target,
            fields,
            level: level(lvl)?,
        })
    }
}

impl Directive {
    /// Longer targets, then more fields, come first; ties by reverse name.
    fn specificity(&self, other: &Self) -> std::cmp::Ordering {
        self.target
            .as_ref()
            .map(String::len)
            .cmp(&other.target.as_ref().map(String::len))
            .then_with(|| self.fields.len().cmp(&other.fields.len()))
            .then_with(|| {
                self.target
                    .cmp(&other.target)
                    .then_with(|| self.fields.cmp(&other.fields))
            })
            .reverse()
    }

    fn matches(&self, meta: &Metadata<'_>) -> bool {
        if let Some(target) = &self.target {
            if !meta.target().starts_with(target.as_str()) {
                return false;
            }
        }
        !meta.is_event()
            || self
                .fields
                .iter()
                .all(|name| meta.fields().field(name).is_some())
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    /// A later directive for the same target and fields replaces an earlier one.
    fn from_str(s: &str) -> Result<Self, FilterError> {
        let mut directives: Vec<Directive> = Vec::new();
        for part in s.split(',') {
            let d: Directive = part.parse()?;
            match directives.binary_search_by(|probe| probe.specificity(&d)) {
                Ok(i) => directives[i] = d,
                Err(i) => directives.insert(i, d),
            }
        }
        Ok(Filter { directives })
    }
}

impl Filter {
    /// Whether an event or span with this metadata is logged.
    pub fn enabled(&self, meta: &Metadata<'_>) -> bool {
        match self.directives.iter().find(|d| d.matches(meta)) {
            Some(d) => d.level >= *meta.level(),
            None => false,
        }
    }

    /// The most verbose level any directive lets through.
    pub fn max_level(&self) -> LevelFilter {
        self.directives
            .iter()
            .map(|d| d.level)
            .max()
            .unwrap_or(LevelFilter::OFF)
    }
}

struct Logger {
    filter: Filter,
    timestamps: bool,
    ansi: bool,
    next_span: AtomicU64,
}

impl Subscriber for Logger {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.filter.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.filter.enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max_level())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed).max(1))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = format_line(event, self.timestamps.then(SystemTime::now), self.ansi);
        // Like the fmt layer: one write per line; a failed write to stderr is dropped.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

const DIM: &str = "\x1b[2m";
const ITALIC: &str = "\x1b[3m";
const RESET: &str = "\x1b[0m";

/// One log line, newline included.
fn format_line(event: &Event<'_>, now: Option<SystemTime>, ansi: bool) -> String {
    let mut line = String::with_capacity(128);
    if let Some(t) = now {
        if ansi {
            line.push_str(DIM);
        }
        let _ = write!(line, "{}", Rfc3339Micros(t));
        if ansi {
            line.push_str(RESET);
        }
        line.push(' ');
    }
    let (name, colour) = match *event.metadata().level() {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        _ => ("ERROR", "31"),
    };
    if ansi {
        let _ = write!(line, "\x1b[{colour}m{name}{RESET} ");
    } else {
        line.push_str(name);
        line.push(' ');
    }
    let mut fields = Fields {
        line,
        ansi,
        first: true,
    };
    event.record(&mut fields);
    let mut line = fields.line;
    line.push('\n');
    line
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC.
struct Rfc3339Micros(SystemTime);

impl fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                match d.subsec_nanos() {
                    0 => (-(d.as_secs() as i64), 0),
                    n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
                }
            }
        };
        let (year, month, day) = crate::httpdate::civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        if year > 9999 {
            write!(f, "+{year}")?;
        } else if year < 0 {
            write!(f, "{year:05}")?;
        } else {
            write!(f, "{year:04}")?;
        }
        write!(
            f,
            "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            nanos / 1_000
        )
    }
}

/// Writes an event's fields: the message bare, then ` name=value` for the rest.
struct Fields {
    line: String,
    ansi: bool,
    first: bool,
}

impl Fields {
    fn separate(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.line.push(' ');
        }
    }

    fn named(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        self.separate();
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let _ = if self.ansi {
            write!(self.line, "{ITALIC}{name}{RESET}{DIM}={RESET}{value}")
        } else {
            write!(self.line, "{name}={value}")
        };
    }

    fn message(&mut self, value: fmt::Arguments<'_>) {
        self.separate();
        let _ = write!(Escaping(&mut self.line), "{value}");
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message(format_args!("{value}"));
        } else {
            self.named(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let Some(source) = value.source() else {
            return self.record_debug(field, &format_args!("{}", EscapedDisplay(value)));
        };
        let sources = format!("{:?}", SourceList(source));
        let (italic, dim, reset) = if self.ansi {
            (ITALIC, DIM, RESET)
        } else {
            ("", "", "")
        };
        let name = field.name();
        self.record_debug(
            field,
            &format_args!(
                "{} {italic}{name}{reset}{italic}.sources{reset}{dim}={reset}{sources}",
                EscapedDisplay(value)
            ),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message(format_args!("{value:?}"));
        } else {
            self.named(field, format_args!("{value:?}"));
        }
    }
}

/// An error and its sources as a list, each escaped.
struct SourceList<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Debug for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(e) = next {
            list.entry(&format_args!("{}", EscapedDisplay(e)));
            next = e.source();
        }
        list.finish()
    }
}

struct EscapedDisplay<'a>(&'a dyn fmt::Display);

impl fmt::Display for EscapedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

/// Escapes the characters a terminal acts on (ESC, BEL, BS, FF, DEL, C1).
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn parse(s: &str) -> Filter {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Whether `filter` logs an event at `level` from `target`, asked through
    /// the real callsite machinery by a scoped subscriber.
    fn logs(filter: &str, target: &'static str, level: Level) -> bool {
        let hit = Arc::new(Mutex::new(Vec::new()));
        let sub = Capture {
            filter: parse(filter),
            lines: hit.clone(),
        };
        tracing::subscriber::with_default(sub, || match (target, level) {
            ("drone_discord::relay", Level::DEBUG) => {
                tracing::debug!(target: "drone_discord::relay", "x")
            }
            ("drone_discord::relay", Level::TRACE) => {
                tracing::trace!(target: "drone_discord::relay", "x")
            }
            ("drone_discord::relay", Level::INFO) => {
                tracing::info!(target: "drone_discord::relay", "x")
            }
            ("drone_discord::serve", Level::DEBUG) => {
                tracing::debug!(target: "drone_discord::serve", "x")
            }
            ("drone_discord::serve", Level::INFO) => {
                tracing::info!(target: "drone_discord::serve", "x")
            }
            ("drone_discord::serve", Level::WARN) => {
                tracing::warn!(target: "drone_discord::serve", "x")
            }
            ("other", Level::INFO) => tracing::info!(target: "other", "x"),
            ("other", Level::ERROR) => tracing::error!(target: "other", "x"),
            _ => panic!("no callsite for {target} {level}"),
        });
        let n = hit.lock().map(|v| v.len()).unwrap_or_default();
        n > 0
    }

    struct Capture {
        filter: Filter,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl Subscriber for Capture {
        fn enabled(&self, meta: &Metadata<'_>) -> bool {
            self.filter.enabled(meta)
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let t = UNIX_EPOCH + Duration::from_micros(1_767_323_045_123_456);
            if let Ok(mut v) = self.lines.lock() {
                v.push(format_line(event, Some(t), false));
                v.push(format_line(event, None, false));
                v.push(format_line(event, Some(t), true));
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn lines(f: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sub = Capture {
            filter: parse("trace"),
            lines: lines.clone(),
        };
        tracing::subscriber::with_default(sub, f);
        let v = lines.lock().map(|v| v.clone()).unwrap_or_default();
        v
    }

    #[test]
    fn a_line_has_the_time_the_level_the_message_and_the_fields() {
        let url = "https://example.invalid/x";
        let got =
            lines(|| tracing::info!(build = 42u64, repo = "o/r", %url, ok = true, "posted build"));
        assert_eq!(got[0], "2026-01-02T03:04:05.123456Z  INFO posted build build=42 repo=\"o/r\" url=https://example.invalid/x ok=true\n");
        assert_eq!(
            got[1],
            " INFO posted build build=42 repo=\"o/r\" url=https://example.invalid/x ok=true\n"
        );
        assert_eq!(
            got[2],
            "\x1b[2m2026-01-02T03:04:05.123456Z\x1b[0m \x1b[32m INFO\x1b[0m posted build \
             \x1b[3mbuild\x1b[0m\x1b[2m=\x1b[0m42 \x1b[3mrepo\x1b[0m\x1b[2m=\x1b[0m\"o/r\" \
             \x1b[3murl\x1b[0m\x1b[2m=\x1b[0mhttps://example.invalid/x \x1b[3mok\x1b[0m\x1b[2m=\x1b[0mtrue\n"
        );
    }

    #[test]
    fn levels_are_padded_to_five() {
        let got = lines(|| {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let plain: Vec<&str> = got.iter().skip(1).step_by(3).map(String::as_str).collect();
        assert_eq!(plain, ["TRACE t\n", "DEBUG d\n", " WARN w\n", "ERROR e\n"]);
    }

    #[test]
    fn fields_without_a_message_and_raw_names() {
        let got = lines(|| tracing::warn!(r#type = "push", n = 1i64));
        assert_eq!(got[1], " WARN type=\"push\" n=1\n");
    }

    #[test]
    fn control_characters_in_the_message_are_escaped() {
        let evil = "red\x1b[31m bell\x07 c1\u{9b}";
        let got = lines(|| tracing::info!("got {evil}"));
        assert_eq!(got[1], " INFO got red\\x1b[31m bell\\x07 c1\\u{9b}\n");
    }

    #[test]
    fn errors_show_their_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot post")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("reset"));
        let got =
            lines(|| tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed"));
        assert_eq!(
            got[1],
            "ERROR failed error=cannot post error.sources=[reset]\n"
        );
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(
            Rfc3339Micros(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Rfc3339Micros(UNIX_EPOCH + Duration::from_nanos(951_782_400_999_999_999)).to_string(),
            "2000-02-29T00:00:00.999999Z"
        );
        assert_eq!(
            Rfc3339Micros(UNIX_EPOCH - Duration::from_micros(1)).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn the_most_specific_directive_decides() {
        assert!(logs("info", "other", Level::INFO));
        assert!(!logs("info", "drone_discord::serve", Level::DEBUG));
        assert!(logs(
            "drone_discord=debug",
            "drone_discord::serve",
            Level::DEBUG
        ));
        assert!(
            !logs("drone_discord=debug", "other", Level::ERROR),
            "no directive for other"
        );
        assert!(logs(
            "warn,drone_discord::relay=trace",
            "drone_discord::relay",
            Level::TRACE
        ));
        assert!(!logs(
            "warn,drone_discord::relay=trace",
            "drone_discord::serve",
            Level::INFO
        ));
        assert!(logs(
            "warn,drone_discord::relay=trace",
            "drone_discord::serve",
            Level::WARN
        ));
        assert!(logs(
            "drone_discord::relay=off,drone_discord=info",
            "drone_discord::serve",
            Level::INFO
        ));
        assert!(!logs(
            "drone_discord::relay=off,drone_discord=info",
            "drone_discord::relay",
            Level::INFO
        ));
        assert!(
            logs("drone_discord", "drone_discord::relay", Level::TRACE),
            "a bare target logs everything"
        );
        assert!(!logs("off", "other", Level::ERROR));
        assert!(
            logs("INFO", "other", Level::INFO),
            "level names ignore case"
        );
        assert!(logs("3", "other", Level::INFO), "levels by number");
        assert!(
            !logs("info,error", "other", Level::INFO),
            "a later directive replaces an earlier one"
        );
        assert!(
            !logs("", "other", Level::INFO),
            "an empty filter logs errors only"
        );
        assert!(logs("", "other", Level::ERROR));
    }

    #[test]
    fn field_directives_apply_to_events_with_those_fields() {
        let filter = parse("info,drone_discord[{build}]=debug");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sub = Capture {
            filter,
            lines: lines.clone(),
        };
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "drone_discord::x", build = 1u64, "with");
            tracing::debug!(target: "drone_discord::x", "without");
        });
        let got = lines.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].contains("with build=1"), "{got:?}");
    }

    /// The line and the filter this module replaced, checked against it (a dev-dependency).
    #[test]
    fn same_lines_as_tracing_subscriber_fmt() {
        use tracing_subscriber::prelude::*;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut v) = self.0.lock() {
                    v.extend_from_slice(b);
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let events = || {
            let url = "https://example.invalid/x";
            let e = std::io::Error::other("reset \x1b");
            tracing::info!(build = 42u64, repo = "o/r", %url, ok = true, "posted build");
            tracing::warn!(r#type = "push", n = -1i64, f = 1.5f64);
            tracing::error!(error = %e, "failed \x1b[31m\u{9b}");
            tracing::debug!(?url, "debug");
            tracing::trace!("trace");
        };
        for ansi in [false, true] {
            let theirs = Buf::default();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer({
                    let b = theirs.clone();
                    move || b.clone()
                })
                .with_target(false)
                .with_ansi(ansi)
                .without_time();
            let sub = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(sub, events);
            let theirs = String::from_utf8(theirs.0.lock().map(|v| v.clone()).unwrap_or_default())
                .unwrap_or_default();

            let ours = Arc::new(Mutex::new(String::new()));
            struct Ours(Arc<Mutex<String>>, bool);
            impl Subscriber for Ours {
                fn enabled(&self, _: &Metadata<'_>) -> bool {
                    true
                }
                fn new_span(&self, _: &Attributes<'_>) -> Id {
                    Id::from_u64(1)
                }
                fn record(&self, _: &Id, _: &Record<'_>) {}
                fn record_follows_from(&self, _: &Id, _: &Id) {}
                fn event(&self, event: &Event<'_>) {
                    if let Ok(mut s) = self.0.lock() {
                        s.push_str(&format_line(event, None, self.1));
                    }
                }
                fn enter(&self, _: &Id) {}
                fn exit(&self, _: &Id) {}
            }
            tracing::subscriber::with_default(Ours(ours.clone(), ansi), events);
            let ours = ours.lock().map(|s| s.clone()).unwrap_or_default();
            assert_eq!(ours, theirs, "ansi={ansi}");
            assert_eq!(ours.lines().count(), 5);
        }
    }

    #[test]
    fn same_decisions_as_tracing_subscriber_targets() {
        use tracing_subscriber::filter::Targets;
        let filters = [
            "info",
            "debug",
            "drone_discord=debug",
            "warn,drone_discord::relay=trace",
            "drone_discord::relay=off,drone_discord=info",
            "drone_discord",
            "off",
            "INFO",
            "3",
            "info,error",
            "",
            "info,",
            "drone_discord=,other=trace",
            "drone=debug,drone_discord=warn",
        ];
        let targets = [
            "drone_discord",
            "drone_discord::relay",
            "drone_discord::serve",
            "drone",
            "other",
            "rustls::client",
        ];
        let levels = [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ];
        for f in filters {
            let theirs: Targets = f.parse().unwrap_or_else(|e| panic!("{f:?}: {e}"));
            let ours = parse(f);
            for t in targets {
                for l in levels {
                    let d = ours
                        .directives
                        .iter()
                        .find(|d| d.target.as_ref().is_none_or(|p| t.starts_with(p.as_str())));
                    let ours_on = d.is_some_and(|d| d.level >= l);
                    assert_eq!(
                        ours_on,
                        theirs.would_enable(t, &l),
                        "filter {f:?}, {t} at {l}"
                    );
                }
            }
        }
        for bad in [
            "a=b=c",
            "a[{x]=info",
            "a[{x}][{y}]=info",
            "drone_discord=loud",
        ] {
            let theirs = bad.parse::<Targets>().err().map(|e| e.to_string());
            let ours = bad.parse::<Filter>().err().map(|e| e.to_string());
            assert_eq!(ours, theirs, "{bad:?}");
        }
    }

    #[test]
    fn bad_filters_say_why() {
        let err = |s: &str| {
            s.parse::<Filter>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            err("a=b=c"),
            "invalid filter directive: too many '=' in filter directive, expected 0 or 1"
        );
        assert_eq!(
            err("a[{x]=info"),
            "invalid filter directive: expected fields list to end with '}]'"
        );
        assert_eq!(
            err("a[{x}][{y}]=info"),
            "invalid filter directive: too many '[{' in filter directive, expected 0 or 1"
        );
        assert!(
            err("drone_discord=loud").contains("error parsing level filter"),
            "{}",
            err("drone_discord=loud")
        );
    }
}
