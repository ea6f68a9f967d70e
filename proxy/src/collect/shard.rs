//! The shard format: `shard-JJJJJ.safetensors` files of examples with their [`ShardMeta`], written whole and
//! atomically from where the rows lie, and read back (the header alone, to check a file is whole; or every
//! [`Example`]). See the module docs of [`crate::collect`] for the layout.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use afx_core::Audio;
use afx_host::ChainLayout;
use afx_spsa::FailureKind;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};
use serde::{Deserialize, Serialize};

use super::config::{CollectConfig, CollectError};

/// Bumped when the shard layout changes.
pub const FORMAT_VERSION: u32 = 1;
/// The description every shard carries (its `afx` metadata) and the manifest repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub version: u32,
    pub chain: String,
    /// `stage.id` of every trainable parameter, in θ order.
    pub params: Vec<String>,
    /// `stage.id` of every parameter of every stage, in `plain` order.
    pub plain_params: Vec<String>,
    pub config: CollectConfig,
    pub shard: usize,
    /// Examples of this shard's range that are not in it, with why.
    pub excluded: BTreeMap<u64, String>,
}

impl ShardMeta {
    /// Whether the shard belongs to the collection `config` of `chain` (a resume skips it; after a task, the
    /// file a worker wrote is this one).
    pub(super) fn is_of(&self, chain: &ChainLayout, config: &CollectConfig) -> bool {
        self.config == *config && self.chain == chain.name()
    }
}

/// One example read back from a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub index: u64,
    pub input: Audio,
    /// Normalised θ.
    pub params: Vec<f32>,
    pub output: Audio,
}

pub fn shard_file(shard: usize) -> String {
    format!("shard-{shard:05}.safetensors")
}

/// The examples of one shard that rendered, in index order.
#[derive(Default)]
pub(super) struct ShardData {
    inputs: Vec<Audio>,
    outputs: Vec<Audio>,
    /// Normalised θ, and every parameter in plain units.
    thetas: Vec<Vec<f32>>,
    plain: Vec<Vec<f32>>,
    kept: Vec<u64>,
}

impl ShardData {
    /// Keeps an example that rendered; lists (and logs) one that did not.
    pub(super) fn keep(
        &mut self,
        chain: &ChainLayout,
        index: u64,
        input: Audio,
        theta: Vec<f32>,
        rendered: Result<Audio, FailureKind>,
        excluded: &mut BTreeMap<u64, String>,
    ) -> Result<(), CollectError> {
        match rendered {
            Ok(output) => {
                let plain = chain.plain_values(&theta).map_err(|e| CollectError::Config(e.to_string()))?;
                self.plain.push(plain.into_iter().flatten().collect());
                self.inputs.push(input);
                self.outputs.push(output);
                self.thetas.push(theta);
                self.kept.push(index);
            }
            Err(kind) => {
                tracing::warn!(example = index, "excluded: {kind}");
                excluded.insert(index, kind.to_string());
            }
        }
        Ok(())
    }
}

/// One tensor to write: a 2-d tensor's rows (or a 1-d tensor as one row), laid end to end in the file from
/// wherever they are.
pub(super) struct Rows<'a> {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    rows: Vec<&'a [u8]>,
}

impl<'a> Rows<'a> {
    /// An f32 tensor (rows, `width`).
    pub(super) fn f32(name: &'static str, rows: impl Iterator<Item = &'a [f32]>, width: usize) -> Rows<'a> {
        let rows: Vec<&[u8]> = rows.map(bytemuck::cast_slice).collect();
        Rows { name, dtype: Dtype::F32, shape: vec![rows.len(), width], rows }
    }

    /// The u64 `index` tensor.
    pub(super) fn index(indices: &'a [u64]) -> Rows<'a> {
        Rows { name: "index", dtype: Dtype::U64, shape: vec![indices.len()], rows: vec![bytemuck::cast_slice(indices)] }
    }
}

/// Writes `tensors` and the metadata `info` to `out` as a safetensors file, each row straight from where it
/// lies.
///
/// The bytes are `safetensors::serialize`'s: the header is the format crate's own [`Metadata`], the tensors
/// come in its order (falling dtype alignment, then name). What this saves is the copies: `serialize` wants
/// each tensor in one buffer and returns the whole file in another, so a shard's megabytes were copied three
/// times before the file got them; here they are copied once, into `out`.
pub(super) fn write_safetensors(
    out: &mut impl Write,
    mut tensors: Vec<Rows<'_>>,
    info: std::collections::HashMap<String, String>,
) -> Result<(), String> {
    tensors.sort_by(|a, b| b.dtype.cmp(&a.dtype).then(a.name.cmp(b.name)));
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0;
    for t in &tensors {
        let len: usize = t.rows.iter().map(|r| r.len()).sum();
        if len != t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8 {
            return Err(format!("tensor {}: {len} bytes for shape {:?} of {:?}", t.name, t.shape, t.dtype));
        }
        let info = TensorInfo { dtype: t.dtype, shape: t.shape.clone(), data_offsets: (offset, offset + len) };
        infos.push((t.name.to_string(), info));
        offset += len;
    }
    let header = Metadata::new(Some(info), infos).map_err(|e| e.to_string())?;
    let mut header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // The format pads the header with spaces to a multiple of 8 bytes, so the data that follows is aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    let io = |e: std::io::Error| e.to_string();
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for row in tensors.iter().flat_map(|t| &t.rows) {
        out.write_all(row).map_err(io)?;
    }
    Ok(())
}

/// A tensor's elements, copied out (the file's bytes have no alignment guarantee).
pub(super) fn tensor<T: bytemuck::Pod>(tensors: &SafeTensors<'_>, name: &str) -> Result<Vec<T>, String> {
    let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let size = std::mem::size_of::<T>();
    if view.data().len() % size != 0 {
        return Err(format!("{name}: {} bytes", view.data().len()));
    }
    Ok(bytemuck::pod_collect_to_vec(view.data()))
}

/// The `n` rows of `width` f32 of a 2-d tensor, each copied once from the file's bytes into a row of its own.
pub(super) fn rows(tensors: &SafeTensors<'_>, name: &str, n: usize, width: usize) -> Result<Vec<Vec<f32>>, String> {
    let view = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let bytes = view.data();
    if view.dtype() != Dtype::F32 || bytes.len() != n * width * 4 {
        return Err(format!("{name}: {} bytes of {:?}, expected {n} rows of {width} f32", bytes.len(), view.dtype()));
    }
    if width == 0 {
        return Ok(vec![vec![]; n]);
    }
    Ok(bytes.chunks_exact(width * 4).map(bytemuck::pod_collect_to_vec).collect())
}

/// Packs a shard's examples into tensors and writes the file atomically.
pub(super) fn write_shard(path: &Path, meta: &ShardMeta, shard: ShardData) -> Result<(), CollectError> {
    let frames = meta.config.frames;
    let tensors = vec![
        Rows::f32("input", shard.inputs.iter().map(|a| a.channel(0)), frames),
        Rows::f32("output", shard.outputs.iter().map(|a| a.channel(0)), frames),
        Rows::f32("params", shard.thetas.iter().map(Vec::as_slice), meta.params.len()),
        Rows::f32("plain", shard.plain.iter().map(Vec::as_slice), meta.plain_params.len()),
        Rows::index(&shard.kept),
    ];
    let info = [("afx".to_string(), serde_json::to_string(meta).expect("metadata serialises"))].into();
    // A collection is written once and read by training later: its gigabytes should not crowd the page cache.
    afx_core::atomic::write_uncached_with(path, |file| {
        // Rows of audio (longer than the buffer) go straight to the file; the parameters' short rows are gathered.
        let mut file = std::io::BufWriter::with_capacity(64 << 10, file);
        write_safetensors(&mut file, tensors, info)?;
        file.flush().map_err(|e| e.to_string())
    })
    .map_err(|reason| CollectError::Write { path: path.into(), reason })
}

/// The metadata of a shard file, checking that the file is whole.
///
/// Reads only the safetensors header: the file is whole when its length is exactly what the header's tensor
/// offsets need (every shard is checked on each resume and manifest, so reading whole files would repeat the
/// collection's I/O).
pub fn read_meta(path: &Path) -> Result<ShardMeta, CollectError> {
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let unreadable = |e: std::io::Error| CollectError::Read { path: path.into(), reason: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let file_len = file.metadata().map_err(unreadable)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| torn(format!("no header: {e}")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(torn(format!("header of {header_len} bytes in a {file_len}-byte file")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| torn(format!("header: {e}")))?;
    let header: Metadata = serde_json::from_slice(&header).map_err(|e| torn(e.to_string()))?;
    let data_len = header.tensors().values().map(|t| t.data_offsets.1).max().unwrap_or(0) as u64;
    if 8 + header_len + data_len != file_len {
        return Err(torn(format!("{file_len} bytes, its header describes {}", 8 + header_len + data_len)));
    }
    check_header(path, &header)
}

/// Headers larger than this are not shards (a shard's header is a few kilobytes).
const MAX_HEADER: u64 = 100 << 20;

/// A shard file's metadata and tensors, checking that the file is whole.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(ShardMeta, SafeTensors<'a>), CollectError> {
    let torn = |e: safetensors::SafeTensorError| CollectError::BadShard { path: path.into(), reason: e.to_string() };
    let tensors = SafeTensors::deserialize(bytes).map_err(torn)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(torn)?;
    Ok((check_header(path, &header)?, tensors))
}

/// The `afx` metadata of a shard's header, checking its version and that every tensor is there.
fn check_header(path: &Path, header: &Metadata) -> Result<ShardMeta, CollectError> {
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let text = header.metadata().as_ref().and_then(|m| m.get("afx")).ok_or_else(|| torn("no afx metadata".into()))?;
    let meta: ShardMeta = serde_json::from_str(text).map_err(|e| torn(e.to_string()))?;
    if meta.version != FORMAT_VERSION {
        return Err(torn(format!("format version {} (this afx reads {FORMAT_VERSION})", meta.version)));
    }
    let tensors = header.tensors();
    for name in ["input", "output", "params", "plain", "index"] {
        if !tensors.contains_key(name) {
            return Err(torn(format!("no tensor {name}")));
        }
    }
    Ok(meta)
}

/// The examples of a shard, for checks and for the proxy's training.
pub fn read_examples(path: &Path) -> Result<Vec<Example>, CollectError> {
    let bytes = std::fs::read(path).map_err(|e| CollectError::Read { path: path.into(), reason: e.to_string() })?;
    let (meta, tensors) = parse(path, &bytes)?;
    let torn = |reason: String| CollectError::BadShard { path: path.into(), reason };
    let index: Vec<u64> = tensor(&tensors, "index").map_err(torn)?;
    let (n, frames, p, rate) = (index.len(), meta.config.frames, meta.params.len(), meta.config.sample_rate);
    let floats = |name: &str, width: usize| rows(&tensors, name, n, width).map_err(torn);
    let (input, output, params) = (floats("input", frames)?, floats("output", frames)?, floats("params", p)?);
    let audio = |samples: Vec<f32>| Audio::new(rate, vec![samples]).expect("one channel");
    Ok(index
        .into_iter()
        .zip(input.into_iter().zip(output).zip(params))
        .map(|(index, ((input, output), params))| Example { index, input: audio(input), params, output: audio(output) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// `write_safetensors` writes exactly the bytes of the format crate's `serialize` (header, padding, tensor
    /// order), and a row layout or shape mismatch is refused.
    #[test]
    fn write_safetensors_writes_the_bytes_of_safetensors_serialize() {
        // Odd sizes, so the header's padding and a u64 tensor after f32 rows of odd length are exercised.
        let (n, frames, p) = (3, 7, 5);
        let audio: Vec<Vec<f32>> = (0..n).map(|k| (0..frames).map(|i| (k * 31 + i) as f32 * 0.37).collect()).collect();
        let theta: Vec<Vec<f32>> = (0..n).map(|k| (0..p).map(|i| (k + i) as f32 / 9.0).collect()).collect();
        let index: Vec<u64> = vec![10, 11, 13];
        let info: std::collections::HashMap<String, String> = [("afx".to_string(), "{\"v\":1}".to_string())].into();

        let mut ours = vec![];
        let tensors = vec![
            Rows::f32("output", audio.iter().map(Vec::as_slice), frames),
            Rows::f32("params", theta.iter().map(Vec::as_slice), p),
            Rows::index(&index),
        ];
        write_safetensors(&mut ours, tensors, info.clone()).unwrap();

        let flat = |rows: &[Vec<f32>]| rows.concat();
        let (audio_flat, theta_flat) = (flat(&audio), flat(&theta));
        let views = vec![
            ("output", TensorView::new(Dtype::F32, vec![n, frames], bytemuck::cast_slice(&audio_flat)).unwrap()),
            ("params", TensorView::new(Dtype::F32, vec![n, p], bytemuck::cast_slice(&theta_flat)).unwrap()),
            ("index", TensorView::new(Dtype::U64, vec![n], bytemuck::cast_slice(&index)).unwrap()),
        ];
        let theirs = safetensors::tensor::serialize(views, Some(info.clone())).unwrap();
        assert_eq!(ours, theirs);

        let tensors = SafeTensors::deserialize(&ours).unwrap();
        assert_eq!(rows(&tensors, "output", n, frames).unwrap(), audio);
        assert_eq!(rows(&tensors, "params", n, p).unwrap(), theta);
        assert!(rows(&tensors, "params", n, p + 1).unwrap_err().contains("params"));

        let short = [&audio[0][..frames - 1]];
        let bad = vec![Rows::f32("output", short.into_iter(), frames)];
        let err = write_safetensors(&mut vec![], bad, info).unwrap_err();
        assert!(err.contains("output"), "{err}");
    }
}
