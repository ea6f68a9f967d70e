//! Decoding audio files of any common format to planar f32 (symphonia; WAV, FLAC, OGG/Vorbis, MP3).

use std::fs::File;
use std::path::Path;

use afx_host::Audio;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::DatasetError;

/// File extensions afx reads as audio.
pub const EXTENSIONS: [&str; 5] = ["wav", "flac", "ogg", "mp3", "oga"];

/// True when `path` has an audio extension afx reads.
pub fn is_audio(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Any audio file afx reads, whole and at its own rate: WAV through the host's reader (exact for the float WAV
/// afx writes, with its errors), other formats (and a file named `.wav` that is not one) through [`load_audio`].
/// What `afx render`, `afx match`, pair folders and the Python module read files with.
pub fn read_audio(path: &Path) -> Result<Audio, DatasetError> {
    let is_wav = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav || !is_audio(path) { Ok(Audio::read_wav(path)?) } else { load_audio(path) }
}

/// Decodes the whole file. A truncated or corrupt file is an error naming it, as is one with no audio, a
/// missing sample rate, or NaN/Inf samples.
pub fn load_audio(path: &Path) -> Result<Audio, DatasetError> {
    let fail = |reason: String| DatasetError::Decode { path: path.into(), reason };
    let file = File::open(path).map_err(|source| DatasetError::Io { path: path.into(), source })?;
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

/// The average of all channels.
pub fn mono(audio: &Audio) -> Audio {
    if audio.num_channels() == 1 {
        return audio.clone();
    }
    let scale = 1.0 / audio.num_channels() as f32;
    let mixed = (0..audio.frames()).map(|f| audio.channels().iter().map(|c| c[f]).sum::<f32>() * scale).collect();
    Audio::new(audio.sample_rate(), vec![mixed]).expect("one channel")
}
