//! What a resume may change: the settings of a run compared leaf by leaf.

use std::collections::BTreeMap;

use super::config::TrainConfig;

/// The settings of `new` that differ from `run`'s, as `name is new (the run's: old)`, leaving out how long it
/// trains (`steps`, `minutes`).
pub(super) fn changed_settings(run: &TrainConfig, new: &TrainConfig) -> Vec<String> {
    let shape = |c: &TrainConfig| {
        let value =
            serde_json::to_value(TrainConfig { steps: 0, minutes: None, ..c.clone() }).expect("a config serialises");
        let mut flat = BTreeMap::new();
        flatten("", &value, &mut flat);
        flat
    };
    let (before, after) = (shape(run), shape(new));
    after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(value))
        .map(|(name, value)| format!("{name} is {value} (the run's: {})", before.get(name).unwrap_or(&"none".into())))
        .collect()
}

/// `value`'s leaves by dotted name (`spsa.epsilon`), as JSON text.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&name, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}
