//! The preview page itself: `page.html` (its CSS and script inline, no
//! external assets), embedded in the binary. The live page (`GET /preview`)
//! keeps the script that polls for cards; the standalone file
//! (`render --html`) is the same page with the cards in it and no script.
//! Both forbid every script but the page's own with a Content-Security-Policy,
//! a second line of defence behind the escaping in `html` and `markdown`.
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

const PAGE: &str = include_str!("page.html");
const CARDS: &str = "<!--cards-->";
const CSP_SLOT: &str = "<!--csp-->";

/// The page's one script element's text, or "" if the page had none.
fn script() -> &'static str {
    let start = PAGE.find("<script>").map(|i| i + "<script>".len());
    let end = PAGE.rfind("</script>");
    match (start, end) {
        (Some(s), Some(e)) if s <= e => &PAGE[s..e],
        _ => "",
    }
}

/// The policy for a page whose only script is `page.html`'s (or none):
/// no other scripts, no frames, no forms, requests only to this service,
/// images (author icons) over http(s) only.
pub fn content_security_policy(with_script: bool) -> String {
    let script_src = if with_script {
        let hash = ring::digest::digest(&ring::digest::SHA256, script().as_bytes());
        format!("'sha256-{}'", B64.encode(hash.as_ref()))
    } else {
        "'none'".to_owned()
    };
    format!(
        "default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; \
         img-src https: http:; connect-src 'self'; base-uri 'none'; form-action 'none'"
    )
}

/// `GET /preview`: the empty page; its script fetches the cards.
pub fn live() -> &'static str {
    PAGE
}

/// A page that shows `cards` (HTML from [`super::html::card`]) and runs nothing.
pub fn standalone(cards: &str) -> String {
    let meta = format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        content_security_policy(false)
    );
    let without_script = match (PAGE.find("<script>"), PAGE.rfind("</script>")) {
        (Some(s), Some(e)) if s <= e => format!("{}{}", &PAGE[..s], &PAGE[e + "</script>".len()..]),
        _ => PAGE.to_owned(),
    };
    without_script
        .replacen(CSP_SLOT, &meta, 1)
        .replacen(CARDS, cards, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_its_slots_and_no_external_assets() {
        assert!(PAGE.contains(CARDS) && PAGE.contains(CSP_SLOT));
        assert_eq!(PAGE.matches("<script>").count(), 1);
        assert!(script().contains("/preview/messages?since="));
        for external in [
            "src=\"http",
            "href=\"http",
            "@import",
            "url(",
            "//fonts",
            "cdn",
        ] {
            assert!(!PAGE.contains(external), "{external}");
        }
    }

    #[test]
    fn the_standalone_file_runs_nothing() {
        let page = standalone("<article class=\"msg\">x</article>");
        assert!(!page.contains("<script"));
        assert!(page.contains("<main id=\"messages\"><article class=\"msg\">x</article></main>"));
        assert!(page.contains("script-src 'none'"));
        let live_policy = content_security_policy(true);
        assert!(live_policy.starts_with("default-src 'none'; script-src 'sha256-"));
    }
}
