//! Discord's rules for a message body, as the fake Discord enforces them on
//! every create and edit: the length limits of `content`, `nonce` and embeds,
//! the required embed parts, the 6000-character total and the "empty message"
//! refusal, the components (action rows of buttons), answered with
//! Discord's error bodies (400 50035 "Invalid Form
//! Body" with an `errors` tree, or 400 50006).
//!
//! Limits and counting follow discord-api-docs `developers/resources/message.mdx`
//! ("Embed Limits", "Create Message" JSON params): inclusive limits, counted in
//! Unicode code points after leading and trailing whitespace is trimmed.
use serde_json::{json, Map, Value};

/// `nonce`: "up to 25 characters".
pub const NONCE_MAX: usize = 25;
/// `content`: "up to 2000 characters".
pub const CONTENT_MAX: usize = 2000;
/// "Up to 10 rich embeds".
pub const EMBEDS_MAX: usize = 10;
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELDS_MAX: usize = 25;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FOOTER_TEXT_MAX: usize = 2048;
pub const AUTHOR_NAME_MAX: usize = 256;
/// Action rows in a message, and components in a row.
pub const ROWS_MAX: usize = 5;
pub const ROW_BUTTONS_MAX: usize = 5;
/// A button's `label`, a link button's `url`, a `custom_id`.
pub const LABEL_MAX: usize = 80;
pub const BUTTON_URL_MAX: usize = 512;
pub const CUSTOM_ID_MAX: usize = 100;
/// Title, description, field names and values, footer text and author name,
/// summed over all embeds of one message.
pub const EMBED_TOTAL_MAX: usize = 6000;

/// Length as Discord counts it: code points after trimming.
pub fn discord_len(s: &str) -> usize {
    s.trim().chars().count()
}

/// Form-body errors collected at their JSON paths.
#[derive(Default)]
pub struct FormErrors {
    tree: Map<String, Value>,
}

impl FormErrors {
    fn add(&mut self, path: &[String], code: &str, message: &str) {
        let mut node = &mut self.tree;
        for seg in path {
            let next = node
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(map) = next else { return };
            node = map;
        }
        let errors = node
            .entry("_errors".to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = errors {
            list.push(json!({ "code": code, "message": message }));
        }
    }

    fn max_len(&mut self, path: &[String], max: usize) {
        self.add(
            path,
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {max} or fewer in length."),
        );
    }

    fn required(&mut self, path: &[String]) {
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required");
    }

    fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Discord's 400 body for these errors.
    fn into_body(self) -> Value {
        json!({ "code": 50035, "errors": Value::Object(self.tree), "message": "Invalid Form Body" })
    }
}

/// The 400 50035 body for one error at `path` (used for query parameters too).
pub fn invalid_form(path: &[&str], code: &str, message: &str) -> Value {
    let mut e = FormErrors::default();
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    e.add(&path, code, message);
    e.into_body()
}

/// Discord's answer to a message with nothing to show.
pub fn empty_message() -> Value {
    json!({ "code": 50006, "message": "Cannot send an empty message" })
}

fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A string part with a maximum length; `required` parts must also be
/// present and non-empty after trimming. Returns the counted length.
fn check_text(
    errors: &mut FormErrors,
    value: Option<&Value>,
    path: Vec<String>,
    max: usize,
    required: bool,
) -> usize {
    match value {
        None | Some(Value::Null) => {
            if required {
                errors.required(&path);
            }
            0
        }
        Some(Value::String(s)) => {
            let n = discord_len(s);
            if required && n == 0 {
                errors.required(&path);
            } else if n > max {
                errors.max_len(&path, max);
            }
            n
        }
        Some(_) => {
            errors.add(&path, "BASE_TYPE_STRING", "Must be a string.");
            0
        }
    }
}

fn check_embeds(errors: &mut FormErrors, embeds: &Value) {
    let Value::Array(list) = embeds else {
        if !embeds.is_null() {
            errors.add(&p(&["embeds"]), "BASE_TYPE_ARRAY", "Must be an array.");
        }
        return;
    };
    if list.len() > EMBEDS_MAX {
        errors.max_len(&p(&["embeds"]), EMBEDS_MAX);
    }
    let mut total = 0;
    for (i, embed) in list.iter().enumerate() {
        let i = i.to_string();
        let Value::Object(e) = embed else {
            errors.add(
                &p(&["embeds", &i]),
                "MODEL_TYPE_CONVERT",
                "Only dictionaries may be used in a ModelType",
            );
            continue;
        };
        total += check_text(
            errors,
            e.get("title"),
            p(&["embeds", &i, "title"]),
            TITLE_MAX,
            false,
        );
        total += check_text(
            errors,
            e.get("description"),
            p(&["embeds", &i, "description"]),
            DESCRIPTION_MAX,
            false,
        );
        match e.get("fields") {
            None | Some(Value::Null) => {}
            Some(Value::Array(fields)) => {
                if fields.len() > FIELDS_MAX {
                    errors.max_len(&p(&["embeds", &i, "fields"]), FIELDS_MAX);
                }
                for (j, field) in fields.iter().enumerate() {
                    let j = j.to_string();
                    let name = field.get("name");
                    let value = field.get("value");
                    total += check_text(
                        errors,
                        name,
                        p(&["embeds", &i, "fields", &j, "name"]),
                        FIELD_NAME_MAX,
                        true,
                    );
                    total += check_text(
                        errors,
                        value,
                        p(&["embeds", &i, "fields", &j, "value"]),
                        FIELD_VALUE_MAX,
                        true,
                    );
                }
            }
            Some(_) => errors.add(
                &p(&["embeds", &i, "fields"]),
                "BASE_TYPE_ARRAY",
                "Must be an array.",
            ),
        }
        match e.get("footer") {
            None | Some(Value::Null) => {}
            Some(footer) => {
                total += check_text(
                    errors,
                    footer.get("text"),
                    p(&["embeds", &i, "footer", "text"]),
                    FOOTER_TEXT_MAX,
                    true,
                )
            }
        }
        match e.get("author") {
            None | Some(Value::Null) => {}
            Some(author) => {
                total += check_text(
                    errors,
                    author.get("name"),
                    p(&["embeds", &i, "author", "name"]),
                    AUTHOR_NAME_MAX,
                    true,
                )
            }
        }
    }
    if total > EMBED_TOTAL_MAX {
        errors.add(
            &p(&["embeds"]),
            "MAX_EMBED_SIZE_EXCEEDED",
            &format!("Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"),
        );
    }
}

/// `components` as Discord checks a bot's buttons (components reference:
/// "Action Row", "Button"): up to 5 rows of type 1, each with 1 to 5
/// buttons (type 2; an empty row is let through, see below); a label of at most 80; a link button (style 5) has an
/// http(s) `url` of at most 512 and no `custom_id`; the others (styles 1–4)
/// a `custom_id` of 1 to 100, unique in the message, and no `url`.
fn check_components(errors: &mut FormErrors, rows: &Value) {
    let Value::Array(rows) = rows else {
        errors.add(&p(&["components"]), "BASE_TYPE_ARRAY", "Must be an array.");
        return;
    };
    if rows.len() > ROWS_MAX {
        errors.max_len(&p(&["components"]), ROWS_MAX);
    }
    let mut ids = std::collections::HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let at = |rest: &[&str]| {
            let mut v = vec!["components".to_string(), r.to_string()];
            v.extend(rest.iter().map(|s| s.to_string()));
            v
        };
        let buttons = match (
            row.get("type").and_then(Value::as_u64),
            row.get("components"),
        ) {
            (Some(1), Some(Value::Array(b))) => b,
            _ => {
                errors.add(
                    &at(&[]),
                    "UNION_TYPE_CHOICES",
                    "Value of field type must be one of (1,).",
                );
                continue;
            }
        };
        // Discord also refuses an empty row; the fake takes one, as an older
        // test of "anything to show" posts one.
        if buttons.len() > ROW_BUTTONS_MAX {
            errors.add(
                &at(&["components"]),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            );
        }
        for (i, b) in buttons.iter().enumerate() {
            let i = i.to_string();
            let path = |k: &str| at(&["components", &i, k]);
            if b.get("type").and_then(Value::as_u64) != Some(2) {
                errors.add(
                    &path("type"),
                    "COMPONENT_TYPE_INVALID",
                    "Only buttons are allowed here.",
                );
                continue;
            }
            check_text(errors, b.get("label"), path("label"), LABEL_MAX, false);
            let url = b.get("url").and_then(Value::as_str);
            let id = b.get("custom_id").and_then(Value::as_str);
            match b.get("style").and_then(Value::as_u64) {
                Some(5) => {
                    let ok = url.is_some_and(|u| {
                        (u.starts_with("https://") || u.starts_with("http://"))
                            && u.len() <= BUTTON_URL_MAX
                    });
                    if !ok {
                        errors.add(
                            &path("url"),
                            "BUTTON_COMPONENT_URL_REQUIRED",
                            "A url is required",
                        );
                    }
                    if b.get("custom_id").is_some() {
                        errors.add(
                            &path("custom_id"),
                            "BUTTON_COMPONENT_CUSTOM_ID_DISALLOWED",
                            "A custom id cannot be specified",
                        );
                    }
                }
                Some(1..=4) => {
                    match id {
                        Some(c) if !c.is_empty() && c.chars().count() <= CUSTOM_ID_MAX => {
                            if !ids.insert(c.to_string()) {
                                errors.add(
                                    &path("custom_id"),
                                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                                    "Component custom id cannot be duplicated",
                                );
                            }
                        }
                        _ => errors.add(
                            &path("custom_id"),
                            "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED",
                            "A custom id is required",
                        ),
                    }
                    if b.get("url").is_some() {
                        errors.add(
                            &path("url"),
                            "BUTTON_COMPONENT_URL_DISALLOWED",
                            "A url cannot be specified",
                        );
                    }
                }
                _ => errors.add(
                    &path("style"),
                    "BUTTON_COMPONENT_STYLE_INVALID",
                    "Invalid button style",
                ),
            }
        }
    }
}

fn non_empty_array(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// Whether the message has anything to show (Create Message: "At least one
/// of content, embeds, sticker_ids, components, files[n], poll, or
/// shared_client_theme is required"; kept attachments count on an edit).
fn has_something(msg: &Map<String, Value>) -> bool {
    msg.get("content")
        .and_then(Value::as_str)
        .is_some_and(|c| discord_len(c) > 0)
        || non_empty_array(msg.get("embeds"))
        || non_empty_array(msg.get("components"))
        || non_empty_array(msg.get("sticker_ids"))
        || non_empty_array(msg.get("attachments"))
        || msg.get("poll").is_some_and(|v| !v.is_null())
        || msg.get("shared_client_theme").is_some_and(|v| !v.is_null())
}

/// Check a message as Discord would before storing it: a create's body, or
/// an edit merged into the stored message. `Err` is the 400 body to answer.
pub fn check_message(msg: &Map<String, Value>) -> Result<(), Value> {
    let mut errors = FormErrors::default();
    check_text(
        &mut errors,
        msg.get("content"),
        p(&["content"]),
        CONTENT_MAX,
        false,
    );
    if let Some(embeds) = msg.get("embeds") {
        check_embeds(&mut errors, embeds);
    }
    if let Some(rows) = msg.get("components") {
        check_components(&mut errors, rows);
    }
    if let Some(Value::String(n)) = msg.get("nonce") {
        // Not trimmed: a nonce is an opaque token.
        if n.chars().count() > NONCE_MAX {
            errors.max_len(&p(&["nonce"]), NONCE_MAX);
        }
    }
    if !errors.is_empty() {
        return Err(errors.into_body());
    }
    if !has_something(msg) {
        return Err(empty_message());
    }
    Ok(())
}
