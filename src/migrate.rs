//! One-off import of the old Python service's build → message map (feature
//! `mongodb`), so builds that were running during the switch keep editing
//! their existing Discord message instead of posting a second one.
//!
//! The old service kept one document per build in the `build` collection:
//! `{id: <drone build id>, status, messageId, data: <drone build>}`. Each
//! becomes a [`MessageRef`] under [`legacy_build_key`]`(id)` (the old service kept no Drone host; the
//! message is adopted by the build's next webhook while it is running, see
//! `store::schema`) in any [`Store`]. The
//! import is idempotent: keys that already have a message are left alone and
//! counted as "already present", so running it twice changes nothing.
use crate::discord::snowflake::is_snowflake;
use crate::store::mongo::MongoStore;
use crate::store::{legacy_build_key, MessageRef, Result, Store, StoreError};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

/// The old service's collection.
pub const BUILD_COLLECTION: &str = "build";
/// Skipped documents listed in the report at most (the count is exact).
const MAX_SKIPS_LISTED: usize = 100;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Documents read from `build`.
    pub read: u64,
    /// Messages written to the store.
    pub imported: u64,
    /// Keys that already had a message (a re-run, or newer data): untouched.
    pub already_present: u64,
    /// Documents that could not be mapped.
    pub skipped: u64,
    /// `(document, reason)` for the first skipped documents.
    pub skips: Vec<(String, String)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {}, imported {}, already present {}, skipped {}",
            self.read, self.imported, self.already_present, self.skipped
        )?;
        for (what, why) in &self.skips {
            write!(f, "\n  skipped {what}: {why}")?;
        }
        Ok(())
    }
}

/// Map one old document to its key and message. `Err` is the reason to skip it.
/// A `messageId` string must be a Discord id by the one rule of
/// [`crate::discord::snowflake`] (after trimming the old service's padding).
pub fn message_from_build_doc(
    d: &Document,
    channel_id: &str,
) -> std::result::Result<(String, MessageRef), String> {
    let id = match d.get("id") {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Double(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => *v as i64,
        Some(Bson::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("id {s:?} is not a number"))?,
        Some(other) => {
            return Err(format!(
                "id has type {:?}, expected an integer",
                other.element_type()
            ))
        }
        None => return Err("no id".into()),
    };
    let message_id = match d.get("messageId") {
        Some(Bson::String(s)) if is_snowflake(s.trim()) => s.trim().to_owned(),
        Some(Bson::String(s)) => return Err(format!("messageId {s:?} is not a Discord id")),
        Some(Bson::Int64(v)) if *v > 0 => v.to_string(),
        Some(Bson::Int32(v)) if *v > 0 => v.to_string(),
        // A snowflake is ~1e18; as a double it has lost its last digits.
        Some(Bson::Double(_)) => {
            return Err("messageId stored as a floating-point number (precision lost)".into())
        }
        Some(Bson::Null) | None => return Err("no messageId (the message was never posted)".into()),
        Some(other) => return Err(format!("messageId has type {:?}", other.element_type())),
    };
    let data = d.get_document("data").ok();
    let status = match d.get("status") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        _ => data
            .and_then(|b| b.get_str("status").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_owned(),
    };
    let m = MessageRef {
        channel_id: channel_id.to_owned(),
        message_id,
        status,
        ..MessageRef::default()
    };
    Ok((legacy_build_key(id), m))
}

fn label(d: &Document) -> String {
    match d.get("id").or_else(|| d.get("_id")) {
        Some(v) => format!("build {v}"),
        None => "a document without id".into(),
    }
}

/// Import one document into `store`, counting it in `report`.
pub async fn import_document<S: Store>(
    store: &S,
    channel_id: &str,
    d: &Document,
    report: &mut Report,
) -> Result<()> {
    report.read += 1;
    match message_from_build_doc(d, channel_id) {
        Ok((key, message)) => {
            if store
                .import_message(&key, &crate::store::channel_dest(channel_id), message)
                .await?
            {
                report.imported += 1;
            } else {
                report.already_present += 1;
            }
        }
        Err(reason) => {
            report.skipped += 1;
            if report.skips.len() < MAX_SKIPS_LISTED {
                report.skips.push((label(d), reason));
            }
        }
    }
    Ok(())
}

/// Import every document of `builds` into `store`.
pub async fn import_builds<S: Store>(
    builds: &Collection<Document>,
    store: &S,
    channel_id: &str,
) -> Result<Report> {
    let mut report = Report::default();
    let mut cursor = builds
        .find(doc! {})
        .await
        .map_err(|e| StoreError::Unavailable(format!("MongoDB read {}: {e}", BUILD_COLLECTION)))?;
    while cursor
        .advance()
        .await
        .map_err(|e| StoreError::Unavailable(format!("MongoDB read {}: {e}", BUILD_COLLECTION)))?
    {
        match cursor.deserialize_current() {
            Ok(d) => import_document(store, channel_id, &d, &mut report).await?,
            Err(e) => {
                report.read += 1;
                report.skipped += 1;
                if report.skips.len() < MAX_SKIPS_LISTED {
                    report
                        .skips
                        .push(("an undecodable document".into(), e.to_string()));
                }
            }
        }
    }
    tracing::info!(
        read = report.read,
        imported = report.imported,
        already_present = report.already_present,
        skipped = report.skipped,
        "import of the old build collection finished"
    );
    Ok(report)
}

/// Connect to the old service's database and import its `build` collection.
pub async fn import_from<S: Store>(
    uri: &str,
    database: &str,
    store: &S,
    channel_id: &str,
) -> Result<Report> {
    let source = MongoStore::connect_read_only(uri, database).await?;
    import_builds(&source.collection(BUILD_COLLECTION), store, channel_id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn build(id: Bson, message_id: Bson) -> Document {
        doc! {
            "id": id,
            "status": "running",
            "messageId": message_id,
            "data": { "id": 2088, "status": "running", "started": 1_621_129_422i64, "updated": 1_621_129_500i64 },
        }
    }

    #[test]
    fn a_typical_document_maps_to_a_message_ref() {
        let (key, m) = message_from_build_doc(
            &build(
                Bson::Int64(2088),
                Bson::String("1099511627776123456".into()),
            ),
            "42",
        )
        .unwrap();
        assert_eq!(key, "build:2088");
        assert_eq!(
            m,
            MessageRef {
                channel_id: "42".into(),
                message_id: "1099511627776123456".into(),
                status: "running".into(),
                ..MessageRef::default()
            }
        );
    }

    #[test]
    fn tolerated_field_types() {
        let (key, m) = message_from_build_doc(
            &build(Bson::Int32(7), Bson::Int64(1_234_567_890_123_456_789)),
            "c",
        )
        .unwrap();
        assert_eq!(
            (key.as_str(), m.message_id.as_str()),
            ("build:7", "1234567890123456789")
        );
        let (key, _) = message_from_build_doc(
            &build(Bson::String(" 9 ".into()), Bson::String("5".into())),
            "c",
        )
        .unwrap();
        assert_eq!(key, "build:9");
        let (key, _) =
            message_from_build_doc(&build(Bson::Double(10.0), Bson::String("5".into())), "c")
                .unwrap();
        assert_eq!(key, "build:10");
        // Status falls back to the build's, then to "unknown".
        let d = doc! { "id": 1, "messageId": "5", "data": { "status": "success" } };
        assert_eq!(message_from_build_doc(&d, "c").unwrap().1.status, "success");
        let d = doc! { "id": 1, "messageId": "5" };
        let m = message_from_build_doc(&d, "c").unwrap().1;
        assert_eq!(m.status.as_str(), "unknown");
    }

    #[test]
    fn unusable_documents_are_skipped_with_a_reason() {
        let cases = [
            (doc! { "messageId": "5" }, "no id"),
            (doc! { "id": "abc", "messageId": "5" }, "not a number"),
            (doc! { "id": true, "messageId": "5" }, "expected an integer"),
            (doc! { "id": 1 }, "never posted"),
            (doc! { "id": 1, "messageId": Bson::Null }, "never posted"),
            (doc! { "id": 1, "messageId": 1.1e18 }, "precision lost"),
            (doc! { "id": 1, "messageId": "12ab" }, "not a Discord id"),
            // The one snowflake rule: no leading zero, fits in a u64.
            (doc! { "id": 1, "messageId": "0123" }, "not a Discord id"),
            (
                doc! { "id": 1, "messageId": "18446744073709551616" },
                "not a Discord id",
            ),
            (doc! { "id": 1, "messageId": [1, 2] }, "type"),
        ];
        for (d, why) in cases {
            let err = message_from_build_doc(&d, "c").expect_err("must be skipped");
            assert!(err.contains(why), "{d}: {err}");
        }
    }

    #[tokio::test]
    async fn import_is_idempotent_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let newer = MessageRef {
            channel_id: "c".into(),
            message_id: "999".into(),
            status: "success".into(),
            ..MessageRef::default()
        };
        assert!(store
            .import_message("build:3", "channel:c", newer.clone())
            .await
            .unwrap());
        let docs = [
            build(Bson::Int64(1), Bson::String("11".into())),
            build(Bson::Int64(2), Bson::String("22".into())),
            build(Bson::Int64(3), Bson::String("33".into())),
            doc! { "id": 4 },
        ];
        let mut first = Report::default();
        for d in &docs {
            import_document(&store, "c", d, &mut first).await.unwrap();
        }
        assert_eq!(
            (
                first.read,
                first.imported,
                first.already_present,
                first.skipped
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(
            first.skips,
            vec![(
                "build 4".to_owned(),
                "no messageId (the message was never posted)".to_owned()
            )]
        );
        let mut second = Report::default();
        for d in &docs {
            import_document(&store, "c", d, &mut second).await.unwrap();
        }
        assert_eq!(
            (
                second.read,
                second.imported,
                second.already_present,
                second.skipped
            ),
            (4, 0, 3, 1)
        );
        assert_eq!(
            store
                .message("build:1", "channel:c")
                .await
                .unwrap()
                .map(|m| m.message_id),
            Some("11".into())
        );
        assert_eq!(
            store.message("build:3", "channel:c").await.unwrap(),
            Some(newer),
            "existing entries are kept"
        );
        assert!(first
            .to_string()
            .starts_with("read 4, imported 2, already present 1, skipped 1\n  skipped build 4"));
    }
}
