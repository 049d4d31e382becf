//! Drone build payloads for the delivery tests and the burst benchmark: a
//! real fixture with the build's id, number, status and commit message set,
//! and its first stage's steps advanced, so every update renders differently;
//! or a `build created` with only its id and number changed.
use super::fixtures::fixture_json;
use drone_discord::drone;
use serde_json::Value;

/// Update `n` of build `id` with `status`, from `template`. The commit
/// message carries the update number; `done_steps(step count)` steps have
/// succeeded, the next one runs, the rest are pending. A final status gets a
/// finish time.
pub fn build_update(
    template: &Value,
    id: i64,
    n: usize,
    status: &str,
    done_steps: impl Fn(usize) -> usize,
) -> Vec<u8> {
    let mut v = template.clone();
    v["build"]["id"] = id.into();
    v["build"]["number"] = id.into();
    v["build"]["status"] = status.into();
    v["build"]["message"] = format!("build {id} update {n}").into();
    if let Some(steps) = v
        .pointer_mut("/build/stages/0/steps")
        .and_then(Value::as_array_mut)
    {
        let done = done_steps(steps.len());
        for (i, step) in steps.iter_mut().enumerate() {
            step["status"] = if i < done {
                "success"
            } else if i == done {
                "running"
            } else {
                "pending"
            }
            .into();
        }
    }
    if drone::is_final(status) {
        v["build"]["finished"] = (v["build"]["started"].as_i64().unwrap_or(0) + 69).into();
    }
    serde_json::to_vec(&v).expect("JSON")
}

/// A `build created` webhook for build `id` with build number `number`, so
/// each one renders as its own message naming `#number`.
pub fn build_created(id: u64, number: u64) -> Vec<u8> {
    let mut v = fixture_json("build_created.json");
    v["build"]["id"] = id.into();
    v["build"]["number"] = number.into();
    serde_json::to_vec(&v).expect("serialise")
}
