//! A user's own pairs: `DIR/raw/NAME.wav` and `DIR/processed/NAME.wav` (or FLAC, OGG, MP3; matched by name
//! without the extension), the same recording before and after the processing the chain should learn
//! (`afx train --pairs DIR`).
//!
//! Loading refuses, naming the file: a file without its counterpart, fewer than 2 pairs (3 with a style
//! reference, which is another pair's processed file), a pair whose rates or lengths differ (a length
//! difference is refused even with `--align`: trim or pad the files), a pair shorter than one training crop,
//! and a pair whose processed file is offset from the raw one by more than [`TOLERANCE_S`] (see
//! [`super::align`]) unless `align` is set, which then shifts the processed file back by the offset and crops
//! both to their overlap. Pairs within the tolerance are kept as they are (an EQ moves the correlation peak by a
//! few samples by itself, and the chain reproduces that). Offsets are measured at the files' own rate on their
//! mono downmix; the files are then converted to mono at the training rate.
//!
//! Training items: a random training pair and a random crop of L frames at the same position in raw (input_A)
//! and processed (target_A), skipping near-silent crops; no loudness normalisation (the chain is
//! level-dependent: the pair's level relation is the data). The reference is a crop of ANOTHER training pair's
//! processed file (style transfer), or L frames of silence without a reference (one fixed style). Each crop
//! carries a pre-roll, the [`PREROLL_S`] of raw audio before it: the chain renders pre-roll and crop and the loss
//! scores the crop only, so a compressor's gain at the crop is the one the processed file had (rendered from the
//! crop alone, it starts at rest: on a heavily compressed preset that error was most of what training left).
//!
//! Held-out pairs (validation): one crop each, the first L frames of the raw file (the processed file's effects
//! started from their reset state there, as the chain's render of the crop does), or the loudest L frames when
//! those are near-silent (RMS over windows every L/4 frames, the earliest of equals); the reference is the loudest L frames of a training pair's processed file
//! (held-out pair k takes training pair k mod the count, in name order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use afx_core::Audio;
use afx_spsa::{Pool, item_seed};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Corruption, PairBatch, PairRequest, PairSource};
use crate::TrainError;

/// Seconds of raw audio rendered before each crop and not scored (its pre-roll): long enough for a
/// compressor's gain to settle where the processed file had it; an effect with a longer memory (a long reverb
/// tail) keeps some of the crop error this removes.
pub const PREROLL_S: f64 = 0.5;
/// Pairs offset by more than this are refused without `align` (seconds).
pub const TOLERANCE_S: f64 = 0.002;
/// Offsets are searched within ± this (seconds).
pub const MAX_OFFSET_S: f64 = 0.1;
/// Crops whose RMS is below this are near-silence (as [`crate::source`]'s).
const SILENCE_RMS: f32 = 1e-3;
/// Random crops tried for one item before the batch fails.
const TRIES: usize = 128;
const SPLIT_STREAM: u64 = 0x5350_4c54; // "SPLT"

/// How to load a pair folder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FolderOptions {
    /// The training rate.
    pub sample_rate: u32,
    /// L: frames of a crop at the training rate (every pair must have at least this many).
    pub frames: usize,
    /// Shift pairs offset by more than [`TOLERANCE_S`] back into line instead of refusing them.
    pub align: bool,
    /// Give a style reference (another pair's processed file); false: silence.
    pub reference: bool,
    /// Held-out pairs; `None`: [`default_val_pairs`].
    pub val_pairs: Option<usize>,
    /// Seeds the choice of held-out pairs.
    pub seed: u64,
}

/// What `pairs.json` says about each pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    /// The file name (the same in raw/ and processed/).
    pub name: String,
    /// The files' own rate and length (before any alignment).
    pub sample_rate: u32,
    pub frames: usize,
    /// Processed relative to raw, at the files' rate: positive = processed lags raw.
    pub offset_frames: i64,
    pub offset_ms: f64,
    /// Shifted back by the offset and cropped to the overlap (`--align`, offset beyond the tolerance).
    pub shifted: bool,
    /// Held out for validation.
    pub held_out: bool,
}

impl PairInfo {
    /// `processed lags raw by 7.00 ms (154 samples at 22050 Hz)`.
    pub fn describe_offset(&self) -> String {
        let (verb, ms, frames) = if self.offset_frames >= 0 {
            ("lags", self.offset_ms, self.offset_frames)
        } else {
            ("leads", -self.offset_ms, -self.offset_frames)
        };
        format!("processed {verb} raw by {ms:.2} ms ({frames} samples at {} Hz)", self.sample_rate)
    }
}

/// About 20 % of `pairs`, at least 1.
pub fn default_val_pairs(pairs: usize) -> usize {
    ((pairs as f64 * 0.2).round() as usize).max(1)
}

/// One pair, mono at the training rate, aligned, the same length.
struct Pair {
    raw: Vec<f32>,
    processed: Vec<f32>,
}

/// A loaded, checked and aligned pair folder with its training/held-out split.
pub struct PairFolder {
    dir: PathBuf,
    rate: u32,
    reference: bool,
    pairs: Vec<Pair>,
    infos: Vec<PairInfo>,
    train: Vec<usize>,
    held_out: Vec<usize>,
}

/// The training or the held-out side of a [`PairFolder`], as a [`PairSource`].
pub struct FolderPairs<'a> {
    folder: &'a PairFolder,
    held_out: bool,
}

impl PairFolder {
    /// Reads, checks and aligns every pair of `dir` and splits them (see the module's documentation).
    pub fn load(dir: &Path, options: &FolderOptions) -> Result<PairFolder, TrainError> {
        let refuse = |message: String| TrainError::Pairs { dir: dir.to_path_buf(), message };
        let (raw_dir, processed_dir) = (dir.join("raw"), dir.join("processed"));
        for d in [&raw_dir, &processed_dir] {
            if !d.is_dir() {
                return Err(refuse(format!(
                    "no folder {} (a pair folder holds raw/ and processed/, WAV files matched by name)",
                    d.display()
                )));
            }
        }
        let raw_files = audio_files(&raw_dir, dir)?;
        let processed_files = audio_files(&processed_dir, dir)?;
        if let Some((stem, file)) = raw_files.iter().find(|(stem, _)| !processed_files.contains_key(*stem)) {
            return Err(refuse(format!("raw/{file} has no counterpart processed/{stem}.* (matched by name)")));
        }
        if let Some((stem, file)) = processed_files.iter().find(|(stem, _)| !raw_files.contains_key(*stem)) {
            return Err(refuse(format!("processed/{file} has no counterpart raw/{stem}.* (matched by name)")));
        }
        let raw_names: Vec<&String> = raw_files.values().collect();
        let needed = if options.reference { 3 } else { 2 };
        if raw_names.len() < needed {
            return Err(refuse(format!(
                "{} pair(s); training needs at least {needed} (one held out for validation{})",
                raw_names.len(),
                if options.reference {
                    ", and a training pair's reference must be another pair's processed file; with \
                     --no-reference 2 are enough"
                } else {
                    ""
                }
            )));
        }

        let (mut pairs, mut infos, mut off) = (vec![], vec![], vec![]);
        for (stem, raw_file) in &raw_files {
            let (pair, info) = load_pair(dir, raw_file, &processed_files[stem], options)?;
            let name = raw_file;
            if info.offset_ms.abs() > TOLERANCE_S * 1000.0 && !options.align {
                off.push(format!("{name} ({})", info.describe_offset()));
            }
            pairs.push(pair);
            infos.push(info);
        }
        if !off.is_empty() {
            return Err(refuse(format!(
                "processed files offset from their raw files by more than {:.0} ms: {}; pass --align to shift \
                 them back and crop each pair to its overlap",
                TOLERANCE_S * 1000.0,
                off.join(", ")
            )));
        }

        let n = pairs.len();
        let val = options.val_pairs.unwrap_or_else(|| default_val_pairs(n));
        let min_train = needed - 1;
        if val == 0 || val + min_train > n {
            return Err(refuse(format!(
                "--val-pairs {val}: of the {n} pairs, at least 1 must be held out and {min_train} left to train on"
            )));
        }
        // Pairs are sorted by name (a BTreeMap by stem); a seeded shuffle picks the held-out ones.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ SPLIT_STREAM);
        for i in (1..n).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut held_out: Vec<usize> = order[..val].to_vec();
        held_out.sort_unstable();
        let train: Vec<usize> = (0..n).filter(|i| !held_out.contains(i)).collect();
        for &i in &held_out {
            infos[i].held_out = true;
        }
        Ok(PairFolder {
            dir: dir.to_path_buf(),
            rate: options.sample_rate,
            reference: options.reference,
            pairs,
            infos,
            train,
            held_out,
        })
    }

    /// Every pair, in name order.
    pub fn pairs(&self) -> &[PairInfo] {
        &self.infos
    }

    pub fn training(&self) -> FolderPairs<'_> {
        FolderPairs { folder: self, held_out: false }
    }

    pub fn validation(&self) -> FolderPairs<'_> {
        FolderPairs { folder: self, held_out: true }
    }

    fn crop(&self, samples: &[f32], start: usize, frames: usize) -> Audio {
        Audio::new(self.rate, vec![samples[start..start + frames].to_vec()]).expect("one channel")
    }

    /// The [`PREROLL_S`] before `start` in `samples`, zeros where it reaches before the file's start (a file
    /// was processed from its start, with the effects at rest, as they stay on silence).
    /// With automation (`hop` > 0) the pre-roll is whole hops, at least [`PREROLL_S`], so the trajectory's rows
    /// keep their frames when it is rendered first.
    fn preroll(&self, samples: &[f32], start: usize, hop: usize) -> Audio {
        let frames = (PREROLL_S * f64::from(self.rate)).round() as usize;
        let frames = if hop > 0 { frames.div_ceil(hop) * hop } else { frames };
        let from = start.saturating_sub(frames);
        let mut pre = vec![0.0; frames - (start - from)];
        pre.extend_from_slice(&samples[from..start]);
        Audio::new(self.rate, vec![pre]).expect("one channel")
    }

    fn silence(&self, frames: usize) -> Audio {
        Audio::silence(self.rate, 1, frames)
    }
}

impl PairSource for FolderPairs<'_> {
    fn batch(&self, _pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError> {
        check_request(request)?;
        let f = self.folder;
        let frames = request.frames;
        let candidates = if self.held_out { &f.held_out } else { &f.train };
        let mut out = PairBatch::default();
        for i in 0..request.batch {
            let mut rng = ChaCha8Rng::seed_from_u64(item_seed(request.seed, i));
            let (j, start) =
                random_crop(&mut rng, candidates, frames, |j| &f.pairs[j].raw, &f.pairs).ok_or_else(|| {
                    TrainError::NoData(format!(
                        "no crop of {frames} frames above silence in the pairs of {}",
                        f.dir.display()
                    ))
                })?;
            let reference = if request.hop > 0 {
                // With automation, the model finds the moves that turn this crop into its processed version.
                f.crop(&f.pairs[j].processed, start, frames)
            } else if f.reference {
                let others: Vec<usize> = f.train.iter().copied().filter(|&k| k != j).collect();
                match random_crop(&mut rng, &others, frames, |k| &f.pairs[k].processed, &f.pairs) {
                    Some((k, s)) => f.crop(&f.pairs[k].processed, s, frames),
                    None => f.silence(frames),
                }
            } else {
                f.silence(frames)
            };
            out.input_a.push(f.crop(&f.pairs[j].raw, start, frames));
            out.preroll_a.push(f.preroll(&f.pairs[j].raw, start, request.hop));
            out.target_a.push(f.crop(&f.pairs[j].processed, start, frames));
            out.reference_b.push(reference);
            out.names.push(f.infos[j].name.clone());
        }
        Ok(out)
    }

    fn held_out(&self, pool: &mut Pool, request: &PairRequest) -> Result<PairBatch, TrainError> {
        if !self.held_out {
            return self.batch(pool, request);
        }
        check_request(request)?;
        let f = self.folder;
        let frames = request.frames;
        let mut out = PairBatch::default();
        for (k, &j) in f.held_out.iter().enumerate() {
            let start = validation_start(&f.pairs[j].raw, frames);
            out.input_a.push(f.crop(&f.pairs[j].raw, start, frames));
            out.preroll_a.push(f.preroll(&f.pairs[j].raw, start, request.hop));
            out.target_a.push(f.crop(&f.pairs[j].processed, start, frames));
            out.reference_b.push(if request.hop > 0 {
                f.crop(&f.pairs[j].processed, start, frames)
            } else if f.reference {
                let r = &f.pairs[f.train[k % f.train.len()]].processed;
                f.crop(r, loudest(r, frames), frames)
            } else {
                f.silence(frames)
            });
            out.names.push(f.infos[j].name.clone());
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        let f = self.folder;
        format!(
            "{} of {} pairs from {} ({})",
            if self.held_out {
                format!("{} held out", f.held_out.len())
            } else {
                format!("{} training", f.train.len())
            },
            f.pairs.len(),
            f.dir.display(),
            if f.reference { "reference: another pair's processed file" } else { "no reference" }
        )
    }

    fn pairs_manifest(&self) -> Option<Vec<PairInfo>> {
        Some(self.folder.infos.clone())
    }
}

fn check_request(request: &PairRequest) -> Result<(), TrainError> {
    if request.corruption != Corruption::None {
        return Err(TrainError::Config(
            "corruption is for synthetic pairs; a pair folder brings its own input (use corruption none)".into(),
        ));
    }
    Ok(())
}

/// A random (pair, start) among `candidates` whose crop of `signal(pair)` is above silence.
fn random_crop<'a>(
    rng: &mut ChaCha8Rng,
    candidates: &[usize],
    frames: usize,
    signal: impl Fn(usize) -> &'a Vec<f32>,
    pairs: &[Pair],
) -> Option<(usize, usize)> {
    if candidates.is_empty() {
        return None;
    }
    for _ in 0..TRIES {
        let j = candidates[(rng.next_u64() % candidates.len() as u64) as usize];
        let len = pairs[j].raw.len();
        let start = (rng.next_u64() % (len - frames + 1) as u64) as usize;
        if rms(&signal(j)[start..start + frames]) >= SILENCE_RMS {
            return Some((j, start));
        }
    }
    None
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Where a held-out pair's crop starts: at the file's start unless that is near-silent, else the loudest crop.
/// At the start the processed file's effects began from their reset state, as the chain's render of the crop
/// does; anywhere else a compressor's gain or a delay's tail carries over from audio the crop's render never
/// hears, an error no parameters can remove (on this folder's eq_comp preset it was most of the MRSTFT that
/// remained after training).
fn validation_start(x: &[f32], frames: usize) -> usize {
    if rms(&x[..frames]) >= SILENCE_RMS { 0 } else { loudest(x, frames) }
}

/// The start of the loudest `frames` frames among windows every `frames / 4` (and the last one).
fn loudest(x: &[f32], frames: usize) -> usize {
    let hop = (frames / 4).max(1);
    let last = x.len() - frames;
    let mut starts: Vec<usize> = (0..=last).step_by(hop).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    let mut best = (0, -1.0f32);
    for s in starts {
        let r = rms(&x[s..s + frames]);
        if r > best.1 {
            best = (s, r);
        }
    }
    best.0
}

/// The audio files (WAV, FLAC, OGG, MP3) in `folder` by stem (sorted), so `raw/a.flac` pairs with
/// `processed/a.wav`; anything else that is not hidden, or two files of one stem, is refused.
fn audio_files(folder: &Path, dir: &Path) -> Result<BTreeMap<String, String>, TrainError> {
    let refuse = |message: String| TrainError::Pairs { dir: dir.to_path_buf(), message };
    let entries = std::fs::read_dir(folder).map_err(TrainError::io(folder))?;
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(TrainError::io(folder))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if !afx_core::audio_file::is_audio(&path) || !path.is_file() {
            return Err(refuse(format!(
                "{}: only audio files (WAV, FLAC, OGG, MP3) are read from raw/ and processed/",
                path.display()
            )));
        }
        let stem = Path::new(&name).file_stem().map_or(name.clone(), |s| s.to_string_lossy().into_owned());
        if let Some(other) = files.insert(stem, name.clone()) {
            return Err(refuse(format!(
                "{}: {other} and {name} share a name; keep one (pairs are matched by name)",
                folder.display()
            )));
        }
    }
    Ok(files)
}

/// Any audio file afx reads (see [`afx_core::audio_file::read_audio`]).
fn read_audio(path: &Path) -> Result<Audio, String> {
    afx_core::audio_file::read_audio(path).map_err(|e| e.to_string())
}

fn seconds(frames: usize, rate: u32) -> f64 {
    frames as f64 / f64::from(rate)
}

/// Reads, checks, measures (and, with `align`, shifts) one pair, then converts it to mono at the training rate.
fn load_pair(
    dir: &Path,
    name: &str,
    processed_name: &str,
    options: &FolderOptions,
) -> Result<(Pair, PairInfo), TrainError> {
    let refuse = |message: String| TrainError::Pairs { dir: dir.to_path_buf(), message };
    let read = |sub: &str, file: &str| {
        let path = dir.join(sub).join(file);
        read_audio(&path).map_err(|e| refuse(format!("{sub}/{file}: {e}")))
    };
    let (raw, processed) = (read("raw", name)?, read("processed", processed_name)?);
    let rate = raw.sample_rate();
    if processed.sample_rate() != rate {
        return Err(refuse(format!(
            "{name}: raw/ is at {rate} Hz but processed/ at {} Hz; a pair must share its rate",
            processed.sample_rate()
        )));
    }
    if processed.frames() != raw.frames() {
        return Err(refuse(format!(
            "{name}: raw/ is {:.3} s ({} frames) long but processed/ {:.3} s ({} frames) at {rate} Hz; a pair must \
             be the same length (even with --align): trim or pad one of them",
            seconds(raw.frames(), rate),
            raw.frames(),
            seconds(processed.frames(), rate),
            processed.frames()
        )));
    }
    let mono = |a: &Audio| a.mono().into_channels().swap_remove(0);
    let max_lag = (MAX_OFFSET_S * f64::from(rate)).round() as usize;
    let offset = super::align::estimate_offset(&mono(&raw), &mono(&processed), max_lag);
    let offset_ms = offset as f64 * 1000.0 / f64::from(rate);
    let shift = options.align && offset_ms.abs() > TOLERANCE_S * 1000.0;
    let info = PairInfo {
        name: name.to_string(),
        sample_rate: rate,
        frames: raw.frames(),
        offset_frames: offset,
        offset_ms,
        shifted: shift,
        held_out: false,
    };
    let (raw, processed) = if shift {
        let (r, p) = super::align::shift_to_overlap(raw.channels(), processed.channels(), offset);
        let audio = |c| Audio::new(rate, c).map_err(|e| refuse(format!("{name}: {e}")));
        (audio(r)?, audio(p)?)
    } else {
        (raw, processed)
    };
    let to_rate = |a: &Audio| -> Result<Vec<f32>, TrainError> {
        Ok(crate::resample::to_rate(a, options.sample_rate)?.into_channels().swap_remove(0))
    };
    let (raw, processed) = (to_rate(&raw)?, to_rate(&processed)?);
    let frames = raw.len().min(processed.len());
    if frames < options.frames {
        return Err(refuse(format!(
            "{name}: {:.3} s{} is shorter than a training crop ({:.3} s): use longer recordings or a shorter \
             --clip-seconds",
            seconds(frames, options.sample_rate),
            if shift { " after alignment" } else { "" },
            seconds(options.frames, options.sample_rate)
        )));
    }
    let (mut raw, mut processed) = (raw, processed);
    raw.truncate(frames);
    processed.truncate(frames);
    Ok((Pair { raw, processed }, info))
}
