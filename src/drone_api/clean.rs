//! A step's log made fit to show as text: ANSI escape sequences (colours,
//! cursor moves, window titles) stripped, carriage-return progress lines
//! reduced to their last state, other control characters dropped, and runs
//! of backticks broken so the log cannot close the code block it is shown in.
const ESC: char = '\u{1b}';
/// Put between two backticks: no run of three can form, and it shows as nothing.
const ZERO_WIDTH_SPACE: char = '\u{200b}';

/// What the terminal would show: escapes and controls gone (tab and newline
/// kept), each line as its last carriage-return state.
pub fn clean_log(text: &str) -> String {
    let plain = strip_escapes(text);
    let mut out = String::with_capacity(plain.len());
    for (i, line) in plain.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // `50%\r100%\r` shows `100%`: the last state that has something in it.
        let last = line
            .rsplit('\r')
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        out.push_str(last);
    }
    out
}

/// Every backtick that follows a backtick gets a zero-width space before
/// it, so "```" in a log cannot end (or start) a code block.
pub fn neutralise_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = '\0';
    for c in text.chars() {
        if c == '`' && prev == '`' {
            out.push(ZERO_WIDTH_SPACE);
        }
        out.push(c);
        prev = c;
    }
    out
}

/// ECMA-48 sequences out: CSI (`ESC [` or U+009B … final byte), OSC and the
/// other strings (`ESC ]`, `P`, `X`, `^`, `_` … BEL or `ESC \`), and the
/// short escapes (`ESC (B`, `ESC 7`); other controls but `\t`, `\n`, `\r` dropped.
fn strip_escapes(text: &str) -> String {
    #[derive(PartialEq)]
    enum S {
        Text,
        Esc,
        EscIntermediate,
        Csi,
        Str,
        StrEsc,
    }
    let mut out = String::with_capacity(text.len());
    let mut state = S::Text;
    for c in text.chars() {
        state = match state {
            S::Text => match c {
                ESC => S::Esc,
                '\u{9b}' => S::Csi,
                '\t' | '\n' | '\r' => {
                    out.push(c);
                    S::Text
                }
                c if c.is_control() => S::Text,
                c => {
                    out.push(c);
                    S::Text
                }
            },
            S::Esc => match c {
                '[' => S::Csi,
                ']' | 'P' | 'X' | '^' | '_' => S::Str,
                ' '..='/' => S::EscIntermediate,
                _ => S::Text,
            },
            S::EscIntermediate if (' '..='/').contains(&c) => S::EscIntermediate,
            S::EscIntermediate => S::Text,
            S::Csi if ('\u{40}'..='\u{7e}').contains(&c) => S::Text,
            // A newline ends a broken sequence rather than eat the next line.
            S::Csi | S::Str if c == '\n' => {
                out.push(c);
                S::Text
            }
            S::Csi => S::Csi,
            S::Str => match c {
                '\u{7}' => S::Text,
                ESC => S::StrEsc,
                _ => S::Str,
            },
            S::StrEsc if c == '\\' => S::Text,
            S::StrEsc => S::Str,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_progress_are_reduced_to_what_a_terminal_shows() {
        let raw = "\u{1b}[1;31mERROR\u{1b}[0m: failed\r\n\
                   \u{1b}]0;title\u{7}Downloading  10%\rDownloading  55%\rDownloading 100%\r\n\
                   tab\there \u{1b}(Bok\u{0}\u{8}\n\
                   \u{9b}2Kcleared\n\
                   \u{1b}[31;\nnext";
        assert_eq!(
            clean_log(raw),
            "ERROR: failed\nDownloading 100%\ntab\there ok\ncleared\n\nnext"
        );
        assert_eq!(clean_log("\u{1b}P1;2q\u{1b}\\done"), "done");
        assert_eq!(clean_log(""), "");
    }

    #[test]
    fn no_run_of_backticks_survives() {
        let n = neutralise_fences("a ``` b ```` c ` d");
        assert!(!n.contains("``"), "{n:?}");
        assert_eq!(n.replace(ZERO_WIDTH_SPACE, ""), "a ``` b ```` c ` d");
    }
}
