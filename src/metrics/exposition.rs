//! The Prometheus text exposition format, version 0.0.4, written by hand
//! (a client crate would cost more binary than the few functions here).
//!
//! What the format asks and this writer does: each family is announced by
//! `# HELP` (backslash and newline escaped) and `# TYPE` before its
//! samples, all samples of a family are together, label values escape
//! backslash, double quote and newline, a histogram has cumulative
//! `_bucket` samples with an `le` label ending in `+Inf`, then `_sum` and
//! `_count`. Values are integers, or seconds written exactly from whole
//! microseconds (no float formatting).
use super::histogram::{Snapshot, MICROS};
use std::fmt::Write;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A sample's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A count, a number of bytes, a 0/1 flag.
    Int(u64),
    /// A duration or a timestamp in whole microseconds, written as seconds.
    Micros(u64),
}

/// The page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn with_capacity(bytes: usize) -> Exposition {
        Exposition {
            out: String::with_capacity(bytes),
        }
    }

    /// `# HELP` and `# TYPE` of the family `name`; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push_str(match kind {
            Kind::Counter => " counter\n",
            Kind::Gauge => " gauge\n",
            Kind::Histogram => " histogram\n",
        });
    }

    /// One sample line: `name{label="value",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Micros(us) => write_seconds(&mut self.out, us),
        }
        self.out.push('\n');
    }

    /// A whole histogram family: HELP, TYPE, the cumulative buckets, `+Inf`,
    /// `_sum` (seconds) and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Snapshot) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut le = String::new();
        for &(bound_us, cumulative) in &h.buckets {
            le.clear();
            write_seconds(&mut le, bound_us);
            self.sample(&bucket, &[("le", &le)], Value::Int(cumulative));
        }
        self.sample(&bucket, &[("le", "+Inf")], Value::Int(h.count));
        self.sample(&format!("{name}_sum"), &[], Value::Micros(h.sum_us));
        self.sample(&format!("{name}_count"), &[], Value::Int(h.count));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format wants it inside double quotes.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `us` microseconds as decimal seconds, exactly and without trailing
/// zeros: 1 500 000 → `1.5`, 2 500 → `0.0025`, 3 600 000 000 → `3600`.
pub fn write_seconds(out: &mut String, us: u64) {
    let (whole, frac) = (us / MICROS, us % MICROS);
    let _ = write!(out, "{whole}");
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(us: u64) -> String {
        let mut s = String::new();
        write_seconds(&mut s, us);
        s
    }

    #[test]
    fn seconds_are_written_exactly() {
        for (us, text) in [
            (0, "0"),
            (1, "0.000001"),
            (1_000, "0.001"),
            (2_500, "0.0025"),
            (100_000, "0.1"),
            (1_000_000, "1"),
            (1_500_000, "1.5"),
            (3_600_000_000, "3600"),
            (1_733_000_000_123_000, "1733000000.123"),
            (u64::MAX, "18446744073709.551615"),
        ] {
            assert_eq!(seconds(us), text, "{us}");
        }
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::default();
        e.sample(
            "x",
            &[
                ("a", "plain"),
                (
                    "b",
                    r#"C:\dir "q"
next"#,
                ),
            ],
            Value::Int(7),
        );
        assert_eq!(
            e.finish(),
            "x{a=\"plain\",b=\"C:\\\\dir \\\"q\\\"\\nnext\"} 7\n"
        );
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let mut e = Exposition::default();
        e.family("y_total", Kind::Counter, "a \\ \"b\"\nc");
        assert_eq!(
            e.finish(),
            "# HELP y_total a \\\\ \"b\"\\nc\n# TYPE y_total counter\n"
        );
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_inf_sum_and_count() {
        let mut e = Exposition::default();
        let h = Snapshot {
            buckets: vec![(2_500, 1), (100_000, 3), (MICROS, 3)],
            count: 4,
            sum_us: 2_250_500,
        };
        e.histogram("lat_seconds", "Latency.", &h);
        assert_eq!(
            e.finish(),
            "# HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.0025\"} 1\n\
             lat_seconds_bucket{le=\"0.1\"} 3\n\
             lat_seconds_bucket{le=\"1\"} 3\n\
             lat_seconds_bucket{le=\"+Inf\"} 4\n\
             lat_seconds_sum 2.2505\n\
             lat_seconds_count 4\n"
        );
    }

    #[test]
    fn gauges_without_labels_and_micros_values() {
        let mut e = Exposition::default();
        e.family("g_seconds", Kind::Gauge, "G.");
        e.sample("g_seconds", &[], Value::Micros(12_345_000));
        assert_eq!(
            e.finish(),
            "# HELP g_seconds G.\n# TYPE g_seconds gauge\ng_seconds 12.345\n"
        );
    }
}
