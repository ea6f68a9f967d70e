//! A collection read back for training: every shard checked, the last ones held out for validation.

use std::path::Path;

use crate::ProxyError;
use crate::collect::{self, Example, Manifest};

/// The examples of a collection, split by shard: whole shards are held out, so no validation example shares a
/// shard (and so a seed range) with training.
pub struct Dataset {
    pub manifest: Manifest,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    /// File names of the held-out shards.
    pub validation_shards: Vec<String>,
}

impl Dataset {
    /// Reads every shard of `dir` (torn or foreign ones are errors naming the file) and holds out the last
    /// `max(1, shards / 10)` shards.
    pub fn open(dir: &Path) -> Result<Dataset, ProxyError> {
        let manifest = collect::scan(dir)?;
        let shards = manifest.shards.len();
        if shards < 2 {
            return Err(ProxyError::Config(format!(
                "{} has {shards} shard; a proxy needs at least 2 (one is held out for validation): collect more \
                 examples or a smaller --shard-size",
                dir.display()
            )));
        }
        let held_out = (shards / 10).max(1);
        let (mut train, mut validation, mut validation_shards) = (vec![], vec![], vec![]);
        for (k, shard) in manifest.shards.iter().enumerate() {
            let examples = collect::read_examples(&dir.join(&shard.file))?;
            if k >= shards - held_out {
                validation.extend(examples);
                validation_shards.push(shard.file.clone());
            } else {
                train.extend(examples);
            }
        }
        if train.is_empty() || validation.is_empty() {
            return Err(ProxyError::Config(format!(
                "{}: no examples left for training or validation (every item of some shards was excluded)",
                dir.display()
            )));
        }
        Ok(Dataset { manifest, train, validation, validation_shards })
    }
}
