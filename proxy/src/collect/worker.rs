//! The worker's side of a collection: the [`SHARD_TASK`] task, which renders one shard's examples and writes its
//! file in the worker, so that only the inputs travel through the pool's pipes.

use afx_core::Audio;
use afx_spsa::{FailureKind, Renderer, Task};

use super::request::{SHARD_TASK, ShardInputs};
use super::shard::{ShardData, write_shard};

/// The tasks of `afx worker` (what it passes to [`main_with_args`](afx_spsa::worker::main_with_args)).
pub fn worker_tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(ShardTask)]
}

/// [`SHARD_TASK`]: the request is [`ShardInputs::task`]'s, the reply the shard's excluded examples (JSON).
struct ShardTask;

impl Task for ShardTask {
    fn name(&self) -> &'static str {
        SHARD_TASK
    }

    fn run(&mut self, request: &[u8], renderer: &mut Renderer<'_>) -> Result<Vec<u8>, FailureKind> {
        let bad = |e: String| FailureKind::Plugin(format!("{SHARD_TASK}: {e}"));
        let (path, mut meta, inputs) = ShardInputs::from_request(request).map_err(bad)?;
        let chain = renderer.chain().name();
        if meta.chain != chain {
            return Err(bad(format!("a shard of chain {:?} sent to a worker of chain {chain:?}", meta.chain)));
        }
        let mut data = ShardData::default();
        let ShardInputs { indices, inputs, thetas, .. } = inputs;
        for ((index, input), theta) in indices.into_iter().zip(inputs).zip(thetas) {
            let mut output = Audio::silence(input.sample_rate(), 1, 0);
            let rendered = renderer.render(&input, &theta, &mut output).map(|()| output);
            data.keep(renderer.chain().layout(), index, input, theta, rendered, &mut meta.excluded)
                .map_err(|e| bad(e.to_string()))?;
        }
        write_shard(&path, &meta, data).map_err(|e| bad(e.to_string()))?;
        Ok(serde_json::to_vec(&meta.excluded).expect("a map of strings serialises"))
    }
}
