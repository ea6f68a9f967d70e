//! Validation on afx's test effect (LV2, in thread workers): a validation in which every item fails reports NaN,
//! not a perfect-looking 0.0, and its record survives metrics.jsonl; the failed count counts items; the
//! baselines are rendered once per validation set and reused.
//!
//! Every test calls [`setup`] before it touches a plugin (see the SAFETY comment there).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use afx_core::Audio;
use afx_core::run_folder::{self, MetricsLog};
use afx_host::{ParamKind, ParamSpec, Scale};
use afx_spsa::{Isolation, Pool, PoolConfig, WorkerSpec};
use afx_testfx_dsp::{DRIVE, GAIN, PARAMS, TONE};
use afx_testkit::{TESTFX_PLUGINS_TOML, testfx};
use afx_trainer::ChainInfo;
use afx_trainer::chain_info::TrainedParam;
use afx_trainer::metrics::Record;
use afx_trainer::train::{TrainConfig, Trainer, ValidationSet};
use candle_core::Device;

struct Setup {
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// The test effect built and packaged, a plugins.toml naming it, and `LV2_PATH` covering it.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("plugins.toml");
        std::fs::write(&config, TESTFX_PLUGINS_TOML).unwrap();
        let lv2_path = format!("{}:/usr/lib/lv2:/usr/local/lib/lv2", testfx().lv2.display());
        // SAFETY: every test calls `setup()` before anything in this process reads the environment (lilv reads
        // LV2_PATH when a host is made, here or in a thread worker), and OnceLock runs this once, before any of
        // them proceeds: no other thread reads or writes the environment concurrently.
        unsafe { std::env::set_var("LV2_PATH", &lv2_path) };
        Setup { config, _dir: dir }
    })
}

fn pool(chain: &str) -> Pool {
    let mut config = PoolConfig::new(WorkerSpec::new(Some(setup().config.clone()), chain), Isolation::Thread);
    config.workers = 2;
    Pool::new(config).unwrap()
}

/// What a run records about `fx`: the test effect's drive, tone and gain over their full ranges, at the
/// effect's defaults (built from the effect's own table, as the `exact` method's tests do).
fn fx_info() -> ChainInfo {
    let params = [DRIVE, TONE, GAIN]
        .into_iter()
        .map(|i| {
            let p = &PARAMS[i];
            let spec = ParamSpec {
                id: p.id.into(),
                name: p.name.into(),
                unit: Some(p.unit.into()),
                min: p.min,
                max: p.max,
                default: p.default,
                scale: if p.log { Scale::Log } else { Scale::Linear },
                kind: ParamKind::Continuous,
            };
            TrainedParam { stage: "fx".into(), default_normalized: spec.to_normalized(p.default), spec }
        })
        .collect();
    ChainInfo { name: "fx".into(), params, stages: vec![] }
}

fn config() -> TrainConfig {
    TrainConfig { batch: 2, clip_seconds: 0.25, val_items: 4, seed: 3, ..TrainConfig::default() }
}

/// A fresh (untrained) model of `fx` and a validation set of real recordings rendered by `fx`.
fn trainer_and_set(fx: &mut Pool) -> (Trainer, ValidationSet) {
    let config = config();
    let trainer = Trainer::new(config.clone(), fx_info(), Device::Cpu).unwrap();
    assert_eq!(fx.num_params(), trainer.chain().num_params());
    let set = ValidationSet::new(&config, fx, common::validation_set()).unwrap();
    assert_eq!(set.pairs.len(), config.val_items, "every validation pair should render through fx");
    (trainer, set)
}

#[test]
fn a_validation_in_which_every_item_fails_reports_nan_and_its_record_survives_the_metrics_file() {
    setup();
    let mut fx = pool("fx");
    let (trainer, set) = trainer_and_set(&mut fx);
    let n = set.pairs.len();
    // The same set scored on the NaN-producing twin: every render fails, only the input row has a value.
    let v = trainer.validate(&mut pool("fx_nan"), &set).unwrap();
    eprintln!("{v:?}");
    assert_eq!((v.items, v.failed), (0, n), "no item is usable and every item failed");
    let m = v.mrstft;
    for (row, value) in [("trained", m.trained), ("input", m.input), ("default", m.default), ("random", m.random)] {
        assert!(value.is_nan(), "{row}: {value} is presented as a score although no item was scored");
    }
    // metrics.jsonl keeps the record (NaN is written as null and read back as NaN), so a resumed run's history and
    // the plot see this validation as it was.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    MetricsLog::open(&path).unwrap().append(&Record::Validation(v.clone())).unwrap();
    let records = run_folder::read_metrics::<Record>(&path).unwrap();
    let [Record::Validation(back)] = records.as_slice() else { panic!("the validation record was lost: {records:?}") };
    assert_eq!((back.items, back.failed), (0, n));
    assert!(back.mrstft.trained.is_nan() && back.mrstft.input.is_nan(), "{back:?}");
    assert_eq!(back.param_error, v.param_error);
}

#[test]
fn the_failed_count_counts_items_in_which_any_render_failed() {
    setup();
    let mut fx = pool("fx");
    let (trainer, mut set) = trainer_and_set(&mut fx);
    let n = set.pairs.len();
    // Item 0: the model reads a reference of NaN samples, so its predicted θ is NaN, which the chain refuses: the
    // trained render fails there and nowhere else.
    let reference = &set.pairs.reference_b[0];
    set.pairs.reference_b[0] = Audio::new(reference.sample_rate(), vec![vec![f32::NAN; reference.frames()]]).unwrap();
    // Item 1: random θ outside [0, 1]: its random-parameter render fails and nothing else of it.
    set.random_theta[1] = vec![2.0; 3];
    let v = trainer.validate(&mut fx, &set).unwrap();
    eprintln!("{v:?}");
    assert_eq!(v.failed, 2, "two items have a failed render (one each), so two items failed");
    assert_eq!(v.items, n - 2);
    assert!(v.mrstft.trained.is_finite() && v.mrstft.random.is_finite(), "{v:?}");
}

#[test]
fn baselines_are_rendered_once_per_validation_set_and_reused() {
    setup();
    let mut fx = pool("fx");
    let (trainer, set) = trainer_and_set(&mut fx);
    let n = set.pairs.len() as u64;
    let before = fx.renders();
    let first = trainer.validate(&mut fx, &set).unwrap();
    let after_first = fx.renders();
    let second = trainer.validate(&mut fx, &set).unwrap();
    let after_second = fx.renders();
    // The first renders the trained model and the default and random baselines; later ones only the model.
    assert_eq!(after_first - before, 3 * n, "first validation");
    assert_eq!(after_second - after_first, n, "a later validation rendered more than the trained model");
    assert_eq!(first, second, "the same model on the same set scored differently with reused baselines");
    assert!(first.items as u64 == n && first.failed == 0, "{first:?}");
    assert!(first.mrstft.default.is_finite() && first.mrstft.random.is_finite(), "{first:?}");
}
