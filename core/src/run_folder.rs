//! A run folder: the files every training run of afx keeps (the controller's and the proxy's alike), and how
//! they are written.
//!
//! ```text
//! RUN/config.json                               what the run trains (the caller's type), written at its start
//! RUN/metrics.jsonl                             one JSON record per line, flushed as written
//! RUN/checkpoints/step-NNNNNNNN.safetensors     weights (and optimizer moments)
//! RUN/checkpoints/step-NNNNNNNN.json            the checkpoint's metadata (the caller's type), naming that file
//! ```
//! Every file but the metrics log is written to a temporary name, synced and renamed ([`crate::atomic`]). A
//! checkpoint counts once its JSON exists, and the JSON is written only after its weights, so a kill at any moment
//! leaves the previous checkpoint usable. On resume the metrics of the steps after the checkpoint are dropped
//! ([`RunFolder::truncate_metrics`]): the resumed run writes them again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::FileError;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The metadata written beside a checkpoint's weights: enough to check its format and find the weights.
pub trait CheckpointMeta: DeserializeOwned {
    /// The version this afx writes and reads; a checkpoint of another is refused.
    const FORMAT_VERSION: u32;
    /// The format's name in that refusal (`run`, `proxy`).
    const FORMAT_NAME: &'static str;
    /// The version this checkpoint was written with.
    fn format_version(&self) -> u32;
    /// The file name of its weights, in the checkpoints folder.
    fn weights(&self) -> &str;
}

/// One record of a metrics log: a step or a validation, numbered by the step it was taken after.
pub trait MetricsRecord: Serialize + DeserializeOwned {
    fn step(&self) -> u64;
}

/// A run folder (see the module docs for its files).
#[derive(Debug, Clone)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> RunFolder {
        RunFolder { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `RUN/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Writes `config` as `config.json` (pretty JSON, atomically).
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<(), FileError> {
        write_json(&self.config_path(), config)
    }

    pub fn read_config<T: DeserializeOwned>(&self) -> Result<T, FileError> {
        read_json(&self.config_path())
    }

    /// Writes `value` as pretty JSON to the file `name` of the folder, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), FileError> {
        write_json(&self.dir.join(name), value)
    }

    /// Writes `bytes` to the file `name` of the folder, atomically (a report, a plot).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), FileError> {
        write_atomic(&self.dir.join(name), bytes)
    }

    /// `RUN/checkpoints`.
    pub fn checkpoints(&self) -> CheckpointDir {
        CheckpointDir::new(self.dir.join("checkpoints"))
    }

    /// The newest complete checkpoint: its metadata and the path of its weights (none when there is none).
    pub fn latest_checkpoint<M: CheckpointMeta>(&self) -> Result<Option<(M, PathBuf)>, FileError> {
        let dir = self.checkpoints();
        let Some(path) = dir.latest().map_err(FileError::io(dir.path()))? else { return Ok(None) };
        let meta: M = read_json(&path)?;
        if meta.format_version() != M::FORMAT_VERSION {
            return Err(FileError::Format {
                path,
                message: format!(
                    "{} format {} (this afx reads {})",
                    M::FORMAT_NAME,
                    meta.format_version(),
                    M::FORMAT_VERSION
                ),
            });
        }
        let weights = dir.path().join(meta.weights());
        Ok(Some((meta, weights)))
    }

    /// `RUN/metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// The metrics log, opened to append (created if missing).
    pub fn metrics_log<R: Serialize>(&self) -> Result<MetricsLog<R>, FileError> {
        MetricsLog::open(&self.metrics_path())
    }

    /// Every record of the metrics log (none when there is no log yet).
    pub fn read_metrics<R: DeserializeOwned>(&self) -> Result<Vec<R>, FileError> {
        read_metrics(&self.metrics_path())
    }

    /// Drops the metrics of steps after `step` (a resumed run writes them again) and returns the records kept.
    pub fn truncate_metrics<R: MetricsRecord>(&self, step: u64) -> Result<Vec<R>, FileError> {
        truncate_metrics(&self.metrics_path(), step)
    }
}

/// A folder of numbered checkpoints, `step-NNNNNNNN.safetensors` (the weights) each with a `step-NNNNNNNN.json`
/// written by the caller AFTER the weights: a checkpoint counts once its JSON exists, so a kill at any moment
/// leaves the previous one usable. Runs of the trainer and of the proxy both keep one.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    pub fn new(dir: impl Into<PathBuf>) -> CheckpointDir {
        CheckpointDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Paths of the weights and metadata of the checkpoint after `step` steps.
    pub fn paths(&self, step: u64) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("step-{step:08}.safetensors")), self.dir.join(format!("step-{step:08}.json")))
    }

    /// The metadata file of the newest complete checkpoint (none when the folder is missing or empty).
    pub fn latest(&self) -> std::io::Result<Option<PathBuf>> {
        Ok(self.stems()?.pop().map(|stem| self.dir.join(format!("{stem}.json"))))
    }

    /// Removes all but the newest `keep` checkpoints.
    pub fn prune(&self, keep: usize) -> std::io::Result<()> {
        let stems = self.stems()?;
        let drop = stems.len().saturating_sub(keep);
        for stem in &stems[..drop] {
            // The JSON first: without it the weights are ignored, so a kill between the two removals is harmless.
            for ext in ["json", "safetensors"] {
                match std::fs::remove_file(self.dir.join(format!("{stem}.{ext}"))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// `step-NNNNNNNN` of every checkpoint with metadata, oldest first.
    fn stems(&self) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let mut stems: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .filter(|n| n.starts_with("step-"))
            .collect();
        stems.sort();
        Ok(stems)
    }
}

/// Appends records of type `R` to a JSONL file, one per line, each flushed as written, so a killed run keeps
/// every finished line.
pub struct MetricsLog<R> {
    path: PathBuf,
    file: File,
    record: PhantomData<fn(&R)>,
}

impl<R: Serialize> MetricsLog<R> {
    pub fn open(path: &Path) -> Result<MetricsLog<R>, FileError> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(FileError::io(path))?;
        Ok(MetricsLog { path: path.to_path_buf(), file, record: PhantomData })
    }

    pub fn append(&mut self, record: &R) -> Result<(), FileError> {
        let line = serde_json::to_string(record)
            .map_err(|e| FileError::Format { path: self.path.clone(), message: e.to_string() })?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(FileError::io(&self.path))
    }
}

/// Every record in a metrics file (none when it is missing; a line that does not parse, such as a torn last line
/// from a kill, is skipped).
pub fn read_metrics<R: DeserializeOwned>(path: &Path) -> Result<Vec<R>, FileError> {
    Ok(read_lines(path)?.unwrap_or_default().into_iter().map(|(_, record)| record).collect())
}

/// Drops the records of steps after `step` (they are redone after a resume), atomically, and returns those kept.
/// The lines kept are written back as they were read. Without a log there is nothing to drop (the log is created
/// when it is opened).
pub fn truncate_metrics<R: MetricsRecord>(path: &Path, step: u64) -> Result<Vec<R>, FileError> {
    let Some(lines) = read_lines::<R>(path)? else { return Ok(vec![]) };
    let (mut text, mut kept) = (String::new(), vec![]);
    for (line, record) in lines.into_iter().filter(|(_, r)| r.step() <= step) {
        text.push_str(&line);
        text.push('\n');
        kept.push(record);
    }
    write_atomic(path, text.as_bytes())?;
    Ok(kept)
}

/// The lines of a metrics file that parse as `R`, with their records (`None` when the file is missing; a line
/// that does not parse, such as a torn last line from a kill, is skipped).
fn read_lines<R: DeserializeOwned>(path: &Path) -> Result<Option<Vec<(String, R)>>, FileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::Io { path: path.to_path_buf(), source: e }),
    };
    let mut records = vec![];
    for line in BufReader::new(file).lines() {
        let line = line.map_err(FileError::io(path))?;
        if let Ok(record) = serde_json::from_str::<R>(&line) {
            records.push((line, record));
        }
    }
    Ok(Some(records))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced, then renamed
/// ([`crate::atomic::write`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    crate::atomic::write(path, bytes).map_err(|message| FileError::format(path, message))
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FileError::format(path, e))?;
    write_atomic(path, text.as_bytes())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(FileError::io(path))?;
    serde_json::from_str(&text).map_err(|e| FileError::format(path, e))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Line {
        step: u64,
        loss: f64,
    }

    impl MetricsRecord for Line {
        fn step(&self) -> u64 {
            self.step
        }
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Meta {
        format_version: u32,
        weights: String,
    }

    impl CheckpointMeta for Meta {
        const FORMAT_VERSION: u32 = 1;
        const FORMAT_NAME: &'static str = "test";
        fn format_version(&self) -> u32 {
            self.format_version
        }
        fn weights(&self) -> &str {
            &self.weights
        }
    }

    #[test]
    fn truncating_keeps_the_lines_up_to_the_step_as_written_and_drops_the_rest_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::new(dir.path());
        assert_eq!(run.truncate_metrics::<Line>(3).unwrap(), [], "no log: nothing to drop");
        assert!(!run.metrics_path().exists(), "no log is made by truncating");
        let mut log = run.metrics_log::<Line>().unwrap();
        for step in 1..=5 {
            log.append(&Line { step, loss: 1.0 / step as f64 }).unwrap();
        }
        // A line written by hand (other spacing) is kept byte for byte; a torn one is dropped.
        let mut file = OpenOptions::new().append(true).open(run.metrics_path()).unwrap();
        write!(file, "{{ \"step\": 2, \"loss\": 7 }}\n{{\"step\":6,\"lo").unwrap();
        let kept = run.truncate_metrics::<Line>(2).unwrap();
        assert_eq!(kept, [Line { step: 1, loss: 1.0 }, Line { step: 2, loss: 0.5 }, Line { step: 2, loss: 7.0 }]);
        let text = std::fs::read_to_string(run.metrics_path()).unwrap();
        assert_eq!(text, "{\"step\":1,\"loss\":1.0}\n{\"step\":2,\"loss\":0.5}\n{ \"step\": 2, \"loss\": 7 }\n");
        assert_eq!(run.read_metrics::<Line>().unwrap(), kept);
    }

    #[test]
    fn the_latest_checkpoint_is_the_newest_with_metadata_and_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::new(dir.path());
        assert!(run.latest_checkpoint::<Meta>().unwrap().is_none(), "no checkpoints folder: none");
        let checkpoints = run.checkpoints();
        std::fs::create_dir_all(checkpoints.path()).unwrap();
        for step in [4, 12] {
            let (weights, meta) = checkpoints.paths(step);
            std::fs::write(&weights, b"w").unwrap();
            let name = weights.file_name().unwrap().to_string_lossy().into_owned();
            write_json(&meta, &Meta { format_version: 1, weights: name }).unwrap();
        }
        // Weights without metadata (a kill between the two writes) do not count.
        std::fs::write(checkpoints.paths(20).0, b"w").unwrap();
        let (_, weights) = run.latest_checkpoint::<Meta>().unwrap().unwrap();
        assert_eq!(weights, checkpoints.paths(12).0);
        checkpoints.prune(1).unwrap();
        assert!(!checkpoints.paths(4).1.exists() && !checkpoints.paths(4).0.exists());

        write_json(&checkpoints.paths(12).1, &Meta { format_version: 9, weights: String::new() }).unwrap();
        let e = run.latest_checkpoint::<Meta>().unwrap_err().to_string();
        assert!(e.ends_with("step-00000012.json: test format 9 (this afx reads 1)"), "{e}");
    }
}
