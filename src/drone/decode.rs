//! Reading a webhook body into the [`Webhook`] types with one table-driven
//! serde visitor instead of a derived `Deserialize` per struct.
//!
//! The derives cost ~30 KiB of the Pi binary (a field visitor, a map visitor
//! and a `null`-tolerant wrapper per struct and field type); this file is the
//! same rules written once: every struct lists its fields as [`Slot`]s, and
//! [`Fields`] fills them from a JSON object. A missing field or `null` keeps
//! the default, unknown fields are skipped, a repeated field or a wrongly
//! typed value is an error (with serde_json's position), as with the derives.
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;

use super::{Build, Repo, Stage, Step, System, User, Webhook};

/// Where one field's value goes, by its JSON type.
enum Slot<'a> {
    Str(&'a mut String),
    Int(&'a mut i64),
    Bool(&'a mut bool),
    Params(&'a mut BTreeMap<String, String>),
    Stages(&'a mut Vec<Stage>),
    Steps(&'a mut Vec<Step>),
    User(&'a mut Option<User>),
    Repo(&'a mut Option<Repo>),
    Build(&'a mut Option<Build>),
    System(&'a mut Option<System>),
}

/// A struct whose fields can be listed as slots.
trait Record: Default {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)>;
}

/// Read a JSON object into `T` (a fresh default, then its fields).
fn record<'de, T: Record, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let mut value = T::default();
    d.deserialize_map(Fields(value.slots()))?;
    Ok(value)
}

/// Fills the listed slots from a JSON object.
struct Fields<'a>(Vec<(&'static str, Slot<'a>)>);

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        // Build, the largest struct, has 34 fields.
        let mut seen: u64 = 0;
        while let Some(key) = map.next_key::<String>()? {
            match self
                .0
                .iter_mut()
                .enumerate()
                .find(|(_, (name, _))| *name == key)
            {
                Some((i, (name, slot))) => {
                    if seen & (1 << i) != 0 {
                        return Err(A::Error::duplicate_field(name));
                    }
                    seen |= 1 << i;
                    map.next_value_seed(Nullable(slot))?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One field's value: `null` keeps the default, anything else must have the slot's type.
struct Nullable<'s, 'a>(&'s mut Slot<'a>);

impl<'de> DeserializeSeed<'de> for Nullable<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Nullable<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0 {
            Slot::Str(v) => **v = String::deserialize(d)?,
            Slot::Int(v) => **v = i64::deserialize(d)?,
            Slot::Bool(v) => **v = bool::deserialize(d)?,
            Slot::Params(v) => **v = BTreeMap::deserialize(d)?,
            Slot::Stages(v) => d.deserialize_seq(Records(v))?,
            Slot::Steps(v) => d.deserialize_seq(Records(v))?,
            Slot::User(v) => **v = Some(record(d)?),
            Slot::Repo(v) => **v = Some(record(d)?),
            Slot::Build(v) => **v = Some(record(d)?),
            Slot::System(v) => **v = Some(record(d)?),
        }
        Ok(())
    }
}

/// A JSON array of objects, appended to the vector.
struct Records<'a, T>(&'a mut Vec<T>);

impl<'de, T: Record> Visitor<'de> for Records<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element_seed(One::<T>(std::marker::PhantomData))? {
            self.0.push(item);
        }
        Ok(())
    }
}

/// One element of [`Records`].
struct One<T>(std::marker::PhantomData<T>);

impl<'de, T: Record> DeserializeSeed<'de> for One<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        record(d)
    }
}

/// The whole body: one JSON object, nothing after it.
pub(super) fn webhook(body: &[u8]) -> Result<Webhook, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let hook = record::<Webhook, _>(&mut de)?;
    de.end()?;
    Ok(hook)
}

impl Record for Webhook {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("event", Slot::Str(&mut self.event)),
            ("action", Slot::Str(&mut self.action)),
            ("user", Slot::User(&mut self.user)),
            ("repo", Slot::Repo(&mut self.repo)),
            ("build", Slot::Build(&mut self.build)),
            ("system", Slot::System(&mut self.system)),
        ]
    }
}

impl Record for User {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("id", Slot::Int(&mut self.id)),
            ("login", Slot::Str(&mut self.login)),
            ("email", Slot::Str(&mut self.email)),
            ("avatar", Slot::Str(&mut self.avatar)),
            ("admin", Slot::Bool(&mut self.admin)),
            ("machine", Slot::Bool(&mut self.machine)),
            ("active", Slot::Bool(&mut self.active)),
            ("created", Slot::Int(&mut self.created)),
            ("updated", Slot::Int(&mut self.updated)),
        ]
    }
}

impl Record for Repo {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("id", Slot::Int(&mut self.id)),
            ("namespace", Slot::Str(&mut self.namespace)),
            ("name", Slot::Str(&mut self.name)),
            ("slug", Slot::Str(&mut self.slug)),
            ("link", Slot::Str(&mut self.link)),
            ("default_branch", Slot::Str(&mut self.default_branch)),
            ("visibility", Slot::Str(&mut self.visibility)),
            ("private", Slot::Bool(&mut self.private)),
            ("active", Slot::Bool(&mut self.active)),
            ("counter", Slot::Int(&mut self.counter)),
        ]
    }
}

impl Record for Build {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("id", Slot::Int(&mut self.id)),
            ("repo_id", Slot::Int(&mut self.repo_id)),
            ("number", Slot::Int(&mut self.number)),
            ("parent", Slot::Int(&mut self.parent)),
            ("status", Slot::Str(&mut self.status)),
            ("error", Slot::Str(&mut self.error)),
            ("event", Slot::Str(&mut self.event)),
            ("action", Slot::Str(&mut self.action)),
            ("link", Slot::Str(&mut self.link)),
            ("timestamp", Slot::Int(&mut self.timestamp)),
            ("title", Slot::Str(&mut self.title)),
            ("message", Slot::Str(&mut self.message)),
            ("before", Slot::Str(&mut self.before)),
            ("after", Slot::Str(&mut self.after)),
            ("ref", Slot::Str(&mut self.r#ref)),
            ("source_repo", Slot::Str(&mut self.source_repo)),
            ("source", Slot::Str(&mut self.source)),
            ("target", Slot::Str(&mut self.target)),
            ("author_login", Slot::Str(&mut self.author_login)),
            ("author_name", Slot::Str(&mut self.author_name)),
            ("author_email", Slot::Str(&mut self.author_email)),
            ("author_avatar", Slot::Str(&mut self.author_avatar)),
            ("sender", Slot::Str(&mut self.sender)),
            ("cron", Slot::Str(&mut self.cron)),
            ("trigger", Slot::Str(&mut self.trigger)),
            ("deploy_to", Slot::Str(&mut self.deploy_to)),
            ("deploy_id", Slot::Int(&mut self.deploy_id)),
            ("params", Slot::Params(&mut self.params)),
            ("started", Slot::Int(&mut self.started)),
            ("finished", Slot::Int(&mut self.finished)),
            ("created", Slot::Int(&mut self.created)),
            ("updated", Slot::Int(&mut self.updated)),
            ("version", Slot::Int(&mut self.version)),
            ("stages", Slot::Stages(&mut self.stages)),
        ]
    }
}

impl Record for Stage {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("id", Slot::Int(&mut self.id)),
            ("number", Slot::Int(&mut self.number)),
            ("name", Slot::Str(&mut self.name)),
            ("kind", Slot::Str(&mut self.kind)),
            ("type", Slot::Str(&mut self.r#type)),
            ("status", Slot::Str(&mut self.status)),
            ("error", Slot::Str(&mut self.error)),
            ("errignore", Slot::Bool(&mut self.errignore)),
            ("exit_code", Slot::Int(&mut self.exit_code)),
            ("machine", Slot::Str(&mut self.machine)),
            ("os", Slot::Str(&mut self.os)),
            ("arch", Slot::Str(&mut self.arch)),
            ("started", Slot::Int(&mut self.started)),
            ("stopped", Slot::Int(&mut self.stopped)),
            ("created", Slot::Int(&mut self.created)),
            ("updated", Slot::Int(&mut self.updated)),
            ("steps", Slot::Steps(&mut self.steps)),
        ]
    }
}

impl Record for Step {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("id", Slot::Int(&mut self.id)),
            ("number", Slot::Int(&mut self.number)),
            ("name", Slot::Str(&mut self.name)),
            ("status", Slot::Str(&mut self.status)),
            ("error", Slot::Str(&mut self.error)),
            ("errignore", Slot::Bool(&mut self.errignore)),
            ("exit_code", Slot::Int(&mut self.exit_code)),
            ("started", Slot::Int(&mut self.started)),
            ("stopped", Slot::Int(&mut self.stopped)),
        ]
    }
}

impl Record for System {
    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        vec![
            ("proto", Slot::Str(&mut self.proto)),
            ("host", Slot::Str(&mut self.host)),
            ("link", Slot::Str(&mut self.link)),
            ("version", Slot::Str(&mut self.version)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::webhook;

    #[test]
    fn a_repeated_field_is_an_error_as_with_the_derives() {
        let e = webhook(br#"{"event":"build","event":"repo"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `event`"), "{e}");
        assert!(webhook(br#"{"build":{"stages":[{"steps":[{"id":1,"id":2}]}]}}"#).is_err());
    }

    #[test]
    fn values_must_have_the_fields_type() {
        for body in [
            &br#"{"build":{"id":1.5}}"#[..],
            br#"{"build":{"id":9223372036854775808}}"#,
            br#"{"build":{"status":7}}"#,
            br#"{"user":{"admin":"yes"}}"#,
            br#"{"build":{"params":{"a":1}}}"#,
            br#"{"build":{"stages":[null]}}"#,
            br#"{"build":"x"}"#,
            br#"{} {}"#,
        ] {
            assert!(webhook(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn nested_values_are_read_and_unknown_fields_skipped() {
        let hook = webhook(
            br#"{"x":[1,{"y":null}],"build":{"id":-3,"params":{"k":"v"},"stages":[{"steps":[{"name":"a","errignore":true}],"os":null}]},"system":{"link":"l"}}"#,
        )
        .unwrap();
        let build = hook.build.unwrap();
        assert_eq!(build.id, -3);
        assert_eq!(build.params.get("k").map(String::as_str), Some("v"));
        assert_eq!(build.stages[0].steps[0].name, "a");
        assert!(build.stages[0].steps[0].errignore);
        assert_eq!(build.stages[0].os, "");
        assert_eq!(hook.system.unwrap().link, "l");
    }
}
