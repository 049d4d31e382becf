//! Golden tests for the Discord rendering: every real Drone payload in
//! `test/fixtures/drone/` and every synthetic one in `test/fixtures/synthetic/`
//! is rendered and compared with `test/golden/<name>.json` (pretty JSON; `null`
//! where nothing is rendered). A change to the look of a message therefore shows
//! up as a reviewable diff of the goldens. Every golden must also pass
//! `check_limits`.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test --test render_golden`.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use drone_discord::drone::{self, STATUSES};
use drone_discord::render::{check_limits, render};
use serde_json::Value;

const FIXTURE_DIRS: [&str; 2] = ["test/fixtures/drone", "test/fixtures/synthetic"];
const GOLDEN_DIR: &str = "test/golden";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (name, path) of every fixture, sorted by name; names are unique across dirs.
fn fixtures() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for dir in FIXTURE_DIRS {
        let entries =
            std::fs::read_dir(root().join(dir)).unwrap_or_else(|e| panic!("read_dir {dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "json") {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                out.push((name, path));
            }
        }
    }
    out.sort();
    let names: BTreeSet<&String> = out.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.len(),
        out.len(),
        "fixture names must be unique across {FIXTURE_DIRS:?}"
    );
    out
}

fn rendered(path: &Path) -> Value {
    let body = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let hook = drone::parse(&body).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    render(&hook).unwrap_or(Value::Null)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

/// Bypasses the test harness's output capture so `UPDATE_GOLDEN` runs say what they wrote.
fn announce(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

#[test]
fn every_fixture_matches_its_golden() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let golden_dir = root().join(GOLDEN_DIR);
    let mut problems = Vec::new();
    let mut written = 0;
    let all = fixtures();
    for (name, path) in &all {
        let msg = rendered(path);
        if !msg.is_null() {
            if let Err(e) = check_limits(&msg) {
                problems.push(format!("{name}: breaks Discord limits: {e}"));
            }
        }
        let golden_path = golden_dir.join(format!("{name}.json"));
        let want = pretty(&msg);
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            let old = std::fs::read_to_string(&golden_path).ok();
            if old.as_deref() != Some(want.as_str()) {
                std::fs::write(&golden_path, &want).unwrap();
                announce(&format!("UPDATE_GOLDEN: wrote {}", golden_path.display()));
                written += 1;
            }
            continue;
        }
        match std::fs::read_to_string(&golden_path) {
            Err(_) => problems.push(format!(
                "{name}: no golden at {}; run UPDATE_GOLDEN=1 cargo test --test render_golden",
                golden_path.display()
            )),
            Ok(got) if got != want => {
                let line = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
                problems.push(format!(
                    "{name}: differs from {} at line {}:\n  golden:   {}\n  rendered: {}",
                    golden_path.display(),
                    line + 1,
                    got.lines().nth(line).unwrap_or("<end>"),
                    want.lines().nth(line).unwrap_or("<end>"),
                ));
            }
            Ok(_) => {}
        }
    }
    if update {
        announce(&format!(
            "UPDATE_GOLDEN: {} fixtures rendered, {written} goldens rewritten",
            all.len()
        ));
    }
    // A golden without a fixture is a leftover that would silently stop being checked.
    let names: BTreeSet<String> = all.iter().map(|(n, _)| n.clone()).collect();
    for entry in std::fs::read_dir(&golden_dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|x| x == "json") && !names.contains(&stem) {
            problems.push(format!("{}: golden without a fixture", path.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn fixtures_cover_every_status_event_and_edge_case() {
    let names: BTreeSet<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    for s in STATUSES {
        assert!(
            names.contains(&format!("status_{s}")),
            "no fixture for status {s}"
        );
    }
    // Each build event's fixture: drone.rs's unit tests (the list is test-only).
    for n in [
        "long_message",
        "unicode",
        "missing_optional",
        "many_stages",
        "unknown_event",
    ] {
        assert!(names.contains(n), "no fixture {n}");
    }
    // The synthetic fixtures really are what their names say.
    let synthetic = root().join("test/fixtures/synthetic");
    let parse = |n: &str| {
        drone::parse(&std::fs::read(synthetic.join(format!("{n}.json"))).unwrap()).unwrap()
    };
    let long = parse("long_message").build.unwrap();
    assert!(long.message.chars().count() >= 10_000);
    assert_eq!(parse("many_stages").build.unwrap().stages.len(), 40);
    let missing = parse("missing_optional");
    assert!(missing.system.is_none());
    let b = missing.build.unwrap();
    assert!(b.stages.is_empty() && b.author_name.is_empty() && b.author_login.is_empty());
    for s in STATUSES {
        assert_eq!(parse(&format!("status_{s}")).build.unwrap().status, s);
    }
}

#[test]
fn goldens_show_what_a_reader_needs() {
    // Rendered afresh rather than read from test/golden/, so this test does not
    // race an UPDATE_GOLDEN run of the test above; that test ties both together.
    let golden = |n: &str| -> Value {
        let path = FIXTURE_DIRS
            .iter()
            .map(|d| root().join(d).join(format!("{n}.json")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no fixture {n}"));
        rendered(&path)
    };
    let field = |v: &Value, name: &str| -> Option<String> {
        v["embeds"][0]["fields"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["value"].as_str().unwrap_or_default().to_owned())
    };
    assert!(golden("unknown_event").is_null());
    assert!(golden("unknown_action").is_null());
    let pr = golden("event_pull_request");
    assert_eq!(field(&pr, "Event").as_deref(), Some("pull request #17"));
    let many = golden("many_stages");
    let names: Vec<String> = many["embeds"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 25);
    assert!(
        names.iter().any(|n| n == "❌ matrix linux/arm64 go1.33"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "🔄 matrix linux/arm64 go1.40"),
        "{names:?}"
    );
    // Every status in the goldens has its own colour.
    let colours: BTreeSet<u64> = STATUSES
        .iter()
        .map(|s| {
            golden(&format!("status_{s}"))["embeds"][0]["color"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(colours.len(), STATUSES.len());
}

/// Every build message whose embed links to Drone carries exactly one
/// action row with the "Open in Drone" link button to that page (style 5,
/// no `custom_id`); other messages carry no buttons.
#[test]
fn build_messages_have_an_open_in_drone_button() {
    let mut with_button = 0;
    for (name, path) in fixtures() {
        let msg = rendered(&path);
        if msg.is_null() {
            continue;
        }
        let hook = drone::parse(&std::fs::read(&path).unwrap()).unwrap();
        let link = msg["embeds"][0]["url"]
            .as_str()
            .filter(|_| hook.build.is_some());
        match link {
            Some(url) => {
                let rows = msg["components"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: no components"));
                assert_eq!(rows.len(), 1, "{name}");
                let button = &rows[0]["components"][0];
                assert_eq!(rows[0]["type"], 1, "{name}");
                assert_eq!(
                    (button["type"].as_u64(), button["style"].as_u64()),
                    (Some(2), Some(5)),
                    "{name}"
                );
                assert_eq!(button["label"], "Open in Drone", "{name}");
                assert_eq!(button["url"], url, "{name}");
                assert!(button.get("custom_id").is_none(), "{name}");
                with_button += 1;
            }
            None => assert!(
                msg.get("components").is_none(),
                "{name}: buttons without a Drone link"
            ),
        }
    }
    assert!(
        with_button >= 20,
        "only {with_button} fixtures have a button"
    );
}
