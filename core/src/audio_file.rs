//! Audio files: WAV read and written with hound ([`Audio::read_wav`], [`Audio::write_wav`]: any PCM/float WAV in,
//! 32-bit float out, written atomically), every other common format (FLAC, OGG/Vorbis, MP3) decoded to planar f32
//! with symphonia ([`load_audio`]), and [`read_audio`], which picks between the two as every afx reader does.

use std::fs::File;
use std::io;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::audio::{Audio, AudioError};

impl Audio {
    /// Reads a WAV file (integer PCM of any width or 32-bit float) into f32 samples in [-1, 1].
    pub fn read_wav(path: &Path) -> Result<Audio, AudioError> {
        let file = std::fs::File::open(path).map_err(|source| AudioError::Open { path: path.into(), source })?;
        let not_wav = |e: hound::Error| AudioError::NotWav { path: path.into(), reason: e.to_string() };
        let reader = hound::WavReader::new(io::BufReader::new(file)).map_err(not_wav)?;
        let spec = reader.spec();
        let num_channels = usize::from(spec.channels);
        if num_channels == 0 {
            return Err(AudioError::NotWav { path: path.into(), reason: "header says 0 channels".into() });
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(not_wav)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|s| s as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(not_wav)?
            }
        };
        let frames = interleaved.len() / num_channels;
        if frames == 0 {
            return Err(AudioError::Empty { path: path.into() });
        }
        if let Some(i) = interleaved.iter().position(|s| !s.is_finite()) {
            let (frame, channel) = (i / num_channels, i % num_channels);
            return Err(AudioError::NonFinite { path: path.into(), value: interleaved[i], frame, channel });
        }
        let mut channels = vec![Vec::with_capacity(frames); num_channels];
        for frame in interleaved.chunks_exact(num_channels) {
            for (channel, &sample) in channels.iter_mut().zip(frame) {
                channel.push(sample);
            }
        }
        Audio::new(spec.sample_rate, channels)
    }

    /// Writes 32-bit float WAV through a temporary file in the same folder, renamed at the end, so a failure
    /// never leaves a half-written file under `path`.
    pub fn write_wav(&self, path: &Path) -> Result<(), AudioError> {
        let fail = |reason: String| AudioError::Write { path: path.into(), reason };
        let spec = hound::WavSpec {
            channels: u16::try_from(self.num_channels()).map_err(|_| fail("too many channels".into()))?,
            sample_rate: self.sample_rate(),
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        crate::atomic::write_with(path, |file| {
            let mut writer = hound::WavWriter::new(io::BufWriter::new(file), spec).map_err(|e| e.to_string())?;
            for frame in 0..self.frames() {
                for channel in self.channels() {
                    writer.write_sample(channel[frame]).map_err(|e| e.to_string())?;
                }
            }
            writer.finalize().map_err(|e| e.to_string())
        })
        .map_err(fail)
    }
}

/// File extensions afx reads as audio.
pub const EXTENSIONS: [&str; 5] = ["wav", "flac", "ogg", "mp3", "oga"];

/// True when `path` has an audio extension afx reads.
pub fn is_audio(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Any audio file afx reads, whole and at its own rate: WAV through [`Audio::read_wav`] (exact for the float WAV
/// afx writes, with its errors), other formats (and a file named `.wav` that is not one) through [`load_audio`].
/// What `afx render`, `afx match`, pair folders and the Python module read files with.
pub fn read_audio(path: &Path) -> Result<Audio, AudioError> {
    let is_wav = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav || !is_audio(path) { Audio::read_wav(path) } else { load_audio(path) }
}

/// Decodes the whole file. A truncated or corrupt file is an error naming it, as is one with no audio, a
/// missing sample rate, or NaN/Inf samples.
pub fn load_audio(path: &Path) -> Result<Audio, AudioError> {
    let fail = |reason: String| AudioError::Decode { path: path.into(), reason };
    let file = File::open(path).map_err(|source| AudioError::Read { path: path.into(), source })?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| fail(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| fail("no audio track".into()))?;
    let track_id = track.id;
    let rate = track.codec_params.sample_rate.ok_or_else(|| fail("no sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| fail(e.to_string()))?;
    let mut planar: Vec<Vec<f32>> = vec![];
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(fail(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(|e| fail(e.to_string()))?;
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if buffer.as_ref().is_none_or(|b| b.capacity() < decoded.capacity() * channels) {
            buffer = Some(SampleBuffer::new(decoded.capacity() as u64, spec));
        }
        let buf = buffer.as_mut().expect("made above");
        buf.copy_interleaved_ref(decoded);
        if planar.is_empty() {
            planar = vec![vec![]; channels];
        } else if planar.len() != channels {
            return Err(fail(format!("channel count changed from {} to {channels}", planar.len())));
        }
        for frame in buf.samples().chunks_exact(channels) {
            for (c, s) in planar.iter_mut().zip(frame) {
                c.push(*s);
            }
        }
    }
    if planar.is_empty() || planar[0].is_empty() {
        return Err(fail("no audio frames".into()));
    }
    if let Some(c) = planar.iter().position(|c| c.iter().any(|s| !s.is_finite())) {
        return Err(fail(format!("NaN or infinite samples in channel {c}")));
    }
    Audio::new(rate, planar).map_err(|e| fail(e.to_string()))
}
